// Package jinja renders Hugging Face chat templates (Jinja) as transformers' apply_chat_template does, on
// top of github.com/nikolalohinski/gonja/v2. It mirrors transformers' _compile_jinja_template:
//
//	ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols, AssistantTracker])
//	filters["tojson"] = json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
//	globals["raise_exception"], globals["strftime_now"]
//
// and replaces the gonja filters, tests and methods that do not behave like Python's, one file per concern:
// the data model (value.go, decode.go), the environment (environment.go), compiling and rendering
// (template.go), the sandbox's limits (sandbox.go: no file loading, range; limits.go: output, allocation,
// loop, depth and time limits of a render; bound.go, bound_calls.go: how gonja's parsed template, filters and
// methods are made to keep them), globals (globals.go, strftime.go), filters (filters.go,
// tojson.go), tests (tests.go), methods (methods.go), the {% generation %} extension (generation.go) and
// the error a template raises (errors.go).
//
// Data model expected by the templates (see DecodeJSON and ValueOf):
//
//	JSON object (non-empty) -> *exec.Dict       (ordered pairs: keeps Python dict insertion order)
//	JSON object (empty)     -> map[string]any{} (so that `{% if obj %}` is false, like Python)
//	JSON array              -> PyList           (fixes gonja's negative-index bug)
//	JSON number             -> int when written without '.'/'e', else float64
//	JSON null               -> None (PyNone sentinel: defined, falsy, prints "None")
//	string/bool             -> string/bool
//
// Pass tools=None / documents=None when absent, as transformers does.
package jinja
