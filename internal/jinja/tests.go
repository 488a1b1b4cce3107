package jinja

import "github.com/nikolalohinski/gonja/v2/exec"

// Jinja tests (`x is ...`) that gonja gets wrong for Python data: its single nil stands for both Undefined and
// None, and it knows no PyNone.

// testSequence is Jinja's `sequence`: true for str/list/dict (anything with len() and []).
func testSequence(_ *exec.Context, in *exec.Value, _ *exec.VarArgs) (bool, error) {
	return !isPyNone(in) && (in.IsString() || in.IsList() || in.IsDict()), nil
}

func testIterable(_ *exec.Context, in *exec.Value, _ *exec.VarArgs) (bool, error) {
	return !isPyNone(in) && in.IsIterable(), nil
}

func testNone(_ *exec.Context, in *exec.Value, _ *exec.VarArgs) (bool, error) {
	return isNone(in), nil
}
