//go:build !cgo

package auto

import "github.com/specforge/specforge/internal/backend/purego"

var defaultBackend = purego.New()
