package draft

import (
	"math"
	"testing"

	"github.com/specforge/specforge/internal/backend/purego"
	"github.com/specforge/specforge/internal/goldentest"
)

// TestBackendsAgree runs the TTT pass and a decoding session of the first TTT golden case on the build's backend and on
// backend/purego: the draft is written against the interface only, so the two differ by float32 rounding
// of their kernels, not by what they compute.
func TestBackendsAgree(t *testing.T) {
	c := goldentest.First(t, goldentest.TTT)
	d := loadGoldenDraft(t, c)
	p, err := NewOn(purego.New(), d.Config, d.Embed, d.Vocab, d.W)
	if err != nil {
		t.Fatal(err)
	}
	b := goldenBatch(t, c, d, "inputs.safetensors", c.Floats(t, "inputs.safetensors", "target_logits"), c.Floats(t, "inputs.safetensors", "aux_hidden"))
	near := func(name string, got, want []float32) {
		t.Helper()
		var scale, worst float64
		for i := range want {
			scale = max(scale, math.Abs(float64(want[i])))
			worst = max(worst, math.Abs(float64(got[i]-want[i])))
		}
		t.Logf("%s: max |diff| %g (scale %g)", name, worst, scale)
		if worst > 1e-5*scale {
			t.Errorf("%s: max |diff| %g (scale %g)", name, worst, scale)
		}
	}
	var K int
	c.Hyper(t, "K", &K)
	gd, gp := NewWeights(&d.Config), NewWeights(&d.Config)
	md, err := d.TTT(b, K, &gd, &Workspace{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	mp, err := p.TTT(b, K, &gp, &Workspace{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(md.Total-mp.Total) > 1e-5*md.Total {
		t.Errorf("total loss %v on %s, %v on purego", md.Total, d.be.Name(), mp.Total)
	}
	pp := gp.Params(&d.Config)
	for i, q := range gd.Params(&d.Config) {
		near("grad."+q.Name, *pp[i].Data, *q.Data)
	}

	sd, err := d.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	sp, err := p.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	H, n := d.Config.HiddenSize, min(12, len(b.IDs)-1)
	ids := make([]int32, n)
	pos := make([]int32, n)
	for i := range ids {
		ids[i], pos[i] = b.IDs[i+1], int32(i)
	}
	aux := b.Aux[:n*d.Config.AuxWidth()]
	od := sd.Forward(ids, sd.FC(aux, n), pos, nil, 0)
	op := sp.Forward(ids, sp.FC(aux, n), pos, nil, 0)
	near("session outputs", op, od)
	near("session logits", sp.Logits(op[(n-1)*H:], 1), sd.Logits(od[(n-1)*H:], 1))
}
