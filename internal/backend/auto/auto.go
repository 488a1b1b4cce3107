// Package auto chooses the backend a binary computes on: backend/cpu when it is built with cgo, backend/purego
// otherwise. It is its own package because package backend, the interface, must not depend on an
// implementation (each implementation imports it).
package auto

import "github.com/specforge/specforge/internal/backend"

// Default returns the backend of this build.
func Default() backend.Backend { return defaultBackend }
