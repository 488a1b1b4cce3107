package jinja

import (
	"fmt"
	"time"

	"github.com/nikolalohinski/gonja/v2/exec"
)

// Now is used by strftime_now; tests pin it for deterministic output.
var Now = time.Now

// raiseException is HF's raise_exception global for one render: it records the first exception raised in
// *raised, where the render finds it after gonja has wrapped the error.
func raiseException(raised **TemplateError) func(*exec.VarArgs) (any, error) {
	return func(args *exec.VarArgs) (any, error) {
		e := &TemplateError{}
		if len(args.Args) > 0 {
			e.Message = args.Args[0].String()
		}
		if *raised == nil {
			*raised = e
		}
		return nil, e
	}
}

func strftimeNow(args *exec.VarArgs) (string, error) {
	if len(args.Args) != 1 || !args.Args[0].IsString() {
		return "", fmt.Errorf("strftime_now(format) takes one string argument")
	}
	return strftime(Now(), args.Args[0].String()), nil
}
