package kernels

import "github.com/specforge/specforge/internal/rope"

// The rotary embeddings live in package rope; these names are the ones the draft and the trainer use.
type (
	// RopeConfig is rope.Config.
	RopeConfig = rope.Config
	// RopeTable is rope.Table.
	RopeTable = rope.Table
	// Rotations is rope.Rotations.
	Rotations = rope.Rotations
)

// ParseRopeScaling is rope.ParseScaling.
func ParseRopeScaling(raw []byte, theta float64, dim, maxPositions int) (RopeConfig, error) {
	return rope.ParseScaling(raw, theta, dim, maxPositions)
}

// NewRopeTable is rope.NewTable.
func NewRopeTable(invFreq []float64, scale float64, positions []int32) *RopeTable {
	return rope.NewTable(invFreq, scale, positions)
}
