//go:build cgo

package auto

import "github.com/specforge/specforge/internal/backend/cpu"

var defaultBackend = cpu.New()
