package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/specforge/specforge/internal/goldentest"
)

// TestPrepareDataRegeneratesWithServer: prepare-data with data.regenerate.server has an OpenAI-compatible
// server (here an httptest peer that answers "re:" and the last user turn) answer the conversations of
// data.regenerate.from, trains on its answers, and finds them in the cache the second time.
func TestPrepareDataRegeneratesWithServer(t *testing.T) {
	var requests atomic.Int32
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if r.URL.Path != "/v1/chat/completions" || r.Header.Get("Authorization") != "Bearer k" {
			http.Error(w, r.URL.Path, http.StatusNotFound)
			return
		}
		var body struct{ Messages []struct{ Content string } }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"id": "1", "object": "chat.completion", "model": "m",
			"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
				"message": map[string]any{"role": "assistant", "content": "re:" + body.Messages[len(body.Messages)-1].Content}}}})
	}))
	defer peer.Close()
	in := filepath.Join(t.TempDir(), "chats.jsonl")
	os.WriteFile(in, []byte(`{"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "old"}]}
{"conversations": [{"from": "human", "value": "one"}, {"from": "gpt", "value": "old"}, {"from": "human", "value": "two"}]}
{"messages": [{"role": "assistant", "content": "no question"}]}
`), 0o644)
	t.Setenv("SPECFORGE_TEST_REGEN_KEY", "k")
	tok := goldentest.Shared(t, "assets", "tokenizers", "qwen3")
	cache := t.TempDir()
	args := []string{"prepare-data", "--target", tok, "--chat-template", "qwen3-instruct", "--cache-dir", cache, "--draft-vocab-size", "100",
		"--set", "data.regenerate.server=" + peer.URL, "--set", "data.regenerate.model=m", "--set", "data.regenerate.from=" + in,
		"--set", "data.regenerate.api_key_env=SPECFORGE_TEST_REGEN_KEY", "--set", "data.regenerate.concurrency=2"}
	out, err := run(args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Log(out)
	for _, want := range []string{"regenerated 2 of 3 rows", "3 answers", "1 failed (starts with an assistant turn: 1)", "train: 2 rows -> 2 samples"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if n := requests.Load(); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
	out, err = run(args...)
	if err != nil || strings.Contains(out, "regenerated") || !strings.Contains(out, "already prepared") || requests.Load() != 3 {
		t.Errorf("second run asked the server again or prepared again: %v\n%s", err, out)
	}
	t.Setenv("SPECFORGE_TEST_REGEN_KEY", "")
	if _, err := run(append(args, "--cache-dir", t.TempDir())...); err == nil || !strings.Contains(err.Error(), "SPECFORGE_TEST_REGEN_KEY") {
		t.Errorf("an unset api_key_env: %v", err)
	}
}
