package jinja

import (
	"github.com/nikolalohinski/gonja/v2/builtins"
	"github.com/nikolalohinski/gonja/v2/config"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/parser"
)

// hfConfig is the jinja2 configuration transformers compiles chat templates with.
func hfConfig() *config.Config {
	c := config.New()
	c.TrimBlocks = true           // jinja2 trim_blocks=True
	c.LeftStripBlocks = true      // jinja2 lstrip_blocks=True
	c.KeepTrailingNewline = false // jinja2 default
	c.AutoEscape = false
	c.StrictUndefined = false // jinja2 default Undefined (lenient)
	return c
}

// buildEnv is a fresh Environment with the filters, tests, methods, globals and extensions of
// transformers' environment, each in Python's behaviour, every filter, method and global that builds values
// in the render budget b.
func buildEnv(b *budget) *exec.Environment {
	// A new filter set: builtins.* are package-level singletons shared by every gonja user.
	ours := map[string]exec.FilterFunction{
		"tojson":   filterToJSON,
		"items":    filterItems,
		"dictsort": filterDictSort,
		"reverse":  filterReverse,
		"trim":     filterTrim,
		"round":    filterRound,
	}
	all := map[string]exec.FilterFunction{}
	for _, name := range gonjaFilters {
		fn, ok := ours[name]
		if !ok {
			if fn, ok = builtins.Filters.Get(name); !ok {
				panic("gonja has no filter " + name)
			}
		}
		all[name] = boundFilter(b, name, fn)
	}
	filters := exec.NewFilterSet(all)
	tests := exec.NewTestSet(map[string]exec.TestFunction{}).Update(builtins.Tests)
	for name, fn := range map[string]exec.TestFunction{
		"sequence": testSequence,
		"iterable": testIterable,
		"none":     testNone,
	} {
		if err := tests.Replace(name, fn); err != nil {
			panic(err)
		}
	}
	controls := exec.NewControlStructureSet(map[string]parser.ControlStructureParser{}).Update(builtins.ControlStructures)
	if err := controls.Register("generation", generationParser); err != nil { // transformers' AssistantTracker
		panic(err)
	}

	ctx := exec.EmptyContext().Update(builtins.GlobalFunctions).Update(builtins.GlobalVariables)
	ctx.Set("none", None) // `None` (capitalised) stays gonja's nil literal
	ctx.Set("range", sandboxRange(b))
	lipsum, _ := builtins.GlobalFunctions.Get("lipsum")
	ctx.Set("lipsum", boundLipsum(b, lipsum.(func(*exec.Evaluator, *exec.VarArgs) *exec.Value)))
	ctx.Set("strftime_now", strftimeNow)

	return &exec.Environment{
		Context:           ctx,
		Filters:           filters,
		Tests:             tests,
		ControlStructures: controls, // builtins include break/continue (loopcontrols)
		Methods: exec.Methods{
			Bool:  builtins.Methods.Bool,
			Int:   builtins.Methods.Int,
			Float: builtins.Methods.Float,
			Str:   boundMethods(b, strMethods(), methodSize),
			Dict:  boundMethods(b, dictMethods(), noSize),
			List:  boundMethods(b, listMethods(), noSize),
		},
	}
}
