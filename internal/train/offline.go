package train

import (
	"fmt"
	"sync"

	"github.com/specforge/specforge/internal/batch"
	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/hidden"
)

// Offline trains from stored hidden states: no target layer runs, only its lm_head (for the teacher).
// Samples are read and decompressed in the background ahead of use (see Prefetch).
type Offline struct {
	Store SampleStore
	Head  LMHead
	Used  []int64

	mu      sync.Mutex
	pending map[int]*pendingSample
	hidden  []float32
	logits  []float32
}

// SampleStore is where Offline reads samples from: a shard folder (hidden.Store) or capture servers
// (capture.Source). Sample must be safe for concurrent use.
type SampleStore interface {
	Len() int
	Sample(i int) (*hidden.Sample, error)
	// Layout is the target's hidden size and the number of aux layers a sample holds.
	Layout() (hiddenSize, auxLayers int)
}

type pendingSample struct {
	done   chan struct{}
	sample *hidden.Sample
	err    error
}

// Len implements BatchSource.
func (o *Offline) Len() int { return o.Store.Len() }

// Prefetch starts reading samples idx in the background.
func (o *Offline) Prefetch(idx []int) {
	for _, i := range idx {
		o.start(i)
	}
}

func (o *Offline) start(i int) *pendingSample {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.pending == nil {
		o.pending = map[int]*pendingSample{}
	}
	if p, ok := o.pending[i]; ok {
		return p
	}
	p := &pendingSample{done: make(chan struct{})}
	o.pending[i] = p
	go func() {
		p.sample, p.err = o.Store.Sample(i)
		close(p.done)
	}()
	return p
}

func (o *Offline) take(i int) (*hidden.Sample, error) {
	p := o.start(i)
	<-p.done
	o.mu.Lock()
	delete(o.pending, i)
	o.mu.Unlock()
	return p.sample, p.err
}

// Batch implements BatchSource: it pads the stored samples and computes the teacher from their final
// hidden states.
func (o *Offline) Batch(idx []int) (*draft.Batch, error) {
	samples := make([]*hidden.Sample, len(idx))
	for k := range idx {
		o.start(idx[k]) // read the whole batch in parallel
	}
	lens := make([]int, len(idx))
	for k, i := range idx {
		s, err := o.take(i)
		if err != nil {
			return nil, err
		}
		samples[k] = s
		lens[k] = len(s.IDs)
	}
	p := batch.New(lens)
	H, layers := o.Store.Layout()
	B, T := p.B, p.T
	A := draft.AuxWidth(layers, H)
	b := &draft.Batch{Tokens: *p,
		Aux: make([]float32, B*T*A), Teacher: draft.NewTeacher(B*T, len(o.Used))}
	finals := make([]float32, B*T*H)
	for k, s := range samples {
		n := len(s.IDs)
		if len(s.Aux) != n*A || len(s.Hidden) != n*H {
			return nil, fmt.Errorf("sample %d: stored states do not match hidden size %d", idx[k], H)
		}
		copy(b.IDs[k*T:], s.IDs)
		copy(b.LossMask[k*T:], s.LossMask)
		copy(b.Aux[k*T*A:], s.Aux)
		copy(finals[k*T*H:], s.Hidden)
	}
	o.hidden, o.logits = TeacherFromHidden(b.Teacher, finals, B, T, o.Head, o.Used, o.hidden, o.logits)
	return b, nil
}
