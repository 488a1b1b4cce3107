package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/specforge/specforge/internal/goldentest"
)

// startServe runs `specforge serve` in-process on a free loopback port with args and returns its address;
// when the test ends its context is cancelled, as SIGTERM does, and the command must return cleanly.
func startServe(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	cmd := rootCommand()
	cmd.SetArgs(append([]string{"serve", "--listen", "127.0.0.1:0"}, args...))
	cmd.SetOut(io.Discard)
	cmd.SetErr(pw)
	done := make(chan error, 1)
	go func() {
		err := cmd.ExecuteContext(ctx)
		pw.CloseWithError(fmt.Errorf("serve returned: %v", err))
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve after its context was cancelled: %v", err)
		}
	})
	lines := bufio.NewScanner(pr)
	for lines.Scan() {
		if _, rest, ok := strings.Cut(lines.Text(), " on http://"); ok && strings.HasPrefix(lines.Text(), "serving ") {
			addr, _, _ := strings.Cut(rest, " ")
			go io.Copy(io.Discard, pr) // the server's later log lines
			return addr
		}
	}
	t.Fatalf("serve did not start: %v", lines.Err())
	return ""
}

// TestServe drives `specforge serve` with the stories260K target, a draft trained for a few steps and a
// Qwen2.5 chat template, through the official Go SDK and the official npm client.
func TestServe(t *testing.T) {
	stories := goldentest.Shared(t, "assets", "models", "stories260K")
	train := t.TempDir()
	if _, err := run(tinyTrainArgs(t, train)...); err != nil {
		t.Fatal(err)
	}
	template := goldentest.Shared(t, "assets", "chat_templates", "Qwen-Qwen2.5-7B-Instruct.jinja")
	addr := startServe(t, "--target", stories, "--draft", filepath.Join(train, "run", "draft"), "--chat-template", template,
		"--steps", "3", "--max-tokens", "64")
	client := openai.NewClient(option.WithBaseURL("http://"+addr+"/v1"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
	ctx := context.Background()
	const name = "stories260K"

	t.Run("models", func(t *testing.T) {
		page, err := client.Models.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Data) != 1 || page.Data[0].ID != name || page.Data[0].Object != "model" {
			t.Errorf("models %+v", page.Data)
		}
	})

	t.Run("completion greedy equals the target alone", func(t *testing.T) {
		want, err := run("generate", "--model", stories, "--prompt", "Once upon a time", "--max-new-tokens", "40")
		if err != nil {
			t.Fatal(err)
		}
		want, _, _ = strings.Cut(want, "\n")
		res, err := client.Completions.New(ctx, openai.CompletionNewParams{Model: name,
			Prompt:    openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
			MaxTokens: openai.Int(40), Temperature: openai.Float(0)})
		if err != nil {
			t.Fatal(err)
		}
		if got := "Once upon a time" + res.Choices[0].Text; got != want {
			t.Errorf("serve: %q\ntarget alone: %q", got, want)
		}
		if u := res.Usage; u.PromptTokens != 5 || u.CompletionTokens != 40 || u.TotalTokens != 45 || res.Choices[0].FinishReason != "length" {
			t.Errorf("usage %+v, finish %q", u, res.Choices[0].FinishReason)
		}
		// A stop string ends the text before it, streamed or not, and however the chunks split it.
		stopped, err := client.Completions.New(ctx, openai.CompletionNewParams{Model: name,
			Prompt:    openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
			MaxTokens: openai.Int(40), Temperature: openai.Float(0), Stop: openai.CompletionNewParamsStopUnion{OfString: openai.String(" named")}})
		if err != nil {
			t.Fatal(err)
		}
		text := stopped.Choices[0].Text
		cut, _, found := strings.Cut(res.Choices[0].Text, " named")
		if !found || text != cut || stopped.Choices[0].FinishReason != "stop" || stopped.Usage.CompletionTokens >= 40 {
			t.Errorf("stop \" named\": %q (finish %q, %d tokens), want %q", text, stopped.Choices[0].FinishReason, stopped.Usage.CompletionTokens, cut)
		}
		s := client.Completions.NewStreaming(ctx, openai.CompletionNewParams{Model: name,
			Prompt:    openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
			MaxTokens: openai.Int(40), Temperature: openai.Float(0), Stop: openai.CompletionNewParamsStopUnion{OfString: openai.String(" named")}})
		var streamed strings.Builder
		for s.Next() {
			for _, c := range s.Current().Choices {
				streamed.WriteString(c.Text)
			}
		}
		if err := s.Err(); err != nil || streamed.String() != text {
			t.Errorf("streamed %q (%v), want %q", streamed.String(), err, text)
		}
	})

	chatParams := openai.ChatCompletionNewParams{Model: name, MaxTokens: openai.Int(32), Temperature: openai.Float(0),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("You tell stories."), openai.UserMessage("Tell me a story about a dog.")}}
	var chatText string
	t.Run("chat", func(t *testing.T) {
		res, err := client.Chat.Completions.New(ctx, chatParams)
		if err != nil {
			t.Fatal(err)
		}
		c := res.Choices[0]
		chatText = c.Message.Content
		if chatText == "" || c.Message.Role != "assistant" || res.Object != "chat.completion" || res.Usage.CompletionTokens == 0 ||
			res.Usage.CompletionTokens > 32 || res.Usage.PromptTokens < 20 || (c.FinishReason != "stop" && c.FinishReason != "length") {
			t.Errorf("chat completion %s", res.RawJSON())
		}
		// A fixed seed samples the same text twice.
		sampled := chatParams
		sampled.Temperature, sampled.Seed, sampled.TopP = openai.Float(0.9), openai.Int(11), openai.Float(0.95)
		var texts [2]string
		for i := range texts {
			r, err := client.Chat.Completions.New(ctx, sampled)
			if err != nil {
				t.Fatal(err)
			}
			texts[i] = r.Choices[0].Message.Content
		}
		if texts[0] != texts[1] || texts[0] == "" {
			t.Errorf("seed 11 sampled %q, then %q", texts[0], texts[1])
		}
	})

	t.Run("chat streamed", func(t *testing.T) {
		p := chatParams
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		s := client.Chat.Completions.NewStreaming(ctx, p)
		var acc openai.ChatCompletionAccumulator
		chunks := 0
		for s.Next() {
			acc.AddChunk(s.Current())
			chunks++
		}
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		if got := acc.Choices[0].Message.Content; got != chatText || chunks < 3 {
			t.Errorf("streamed %q in %d chunks, not streamed %q", got, chunks, chatText)
		}
		if acc.Usage.CompletionTokens == 0 || acc.Usage.TotalTokens != acc.Usage.PromptTokens+acc.Usage.CompletionTokens {
			t.Errorf("streamed usage %+v", acc.Usage)
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		for _, c := range []struct {
			name   string
			edit   func(p *openai.ChatCompletionNewParams)
			status int
			param  string
			text   string
		}{
			{"temperature", func(p *openai.ChatCompletionNewParams) { p.Temperature = openai.Float(3) }, 400, "temperature", "temperature must be in [0, 2]"},
			{"n", func(p *openai.ChatCompletionNewParams) { p.N = openai.Int(2) }, 400, "n", "one choice"},
			{"max_tokens", func(p *openai.ChatCompletionNewParams) { p.MaxTokens = openai.Int(100000) }, 400, "max_tokens", "at most 64"},
			{"model", func(p *openai.ChatCompletionNewParams) { p.Model = "gpt-4o" }, 404, "", `"gpt-4o" does not exist`},
		} {
			p := chatParams
			c.edit(&p)
			_, err := client.Chat.Completions.New(ctx, p)
			var apiErr *openai.Error
			if !errors.As(err, &apiErr) {
				t.Errorf("%s: error %v, want an *openai.Error", c.name, err)
				continue
			}
			if apiErr.StatusCode != c.status || apiErr.Param != c.param || !strings.Contains(apiErr.Message, c.text) {
				t.Errorf("%s: status %d, param %q, message %q; want %d, %q, %q", c.name, apiErr.StatusCode, apiErr.Param, apiErr.Message, c.status, c.param, c.text)
			}
		}
	})

	t.Run("npm", func(t *testing.T) { testServeNPM(t, "http://"+addr+"/v1", name) })

	t.Run("metrics", func(t *testing.T) {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		value := func(name string, labels map[string]string) float64 {
			f, ok := fams[name]
			if !ok {
				t.Errorf("no metric %s", name)
				return -1
			}
		metrics:
			for _, m := range f.Metric {
				for _, l := range m.Label {
					if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
						continue metrics
					}
				}
				switch {
				case m.Counter != nil:
					return m.Counter.GetValue()
				case m.Gauge != nil:
					return m.Gauge.GetValue()
				case m.Histogram != nil:
					return float64(m.Histogram.GetSampleCount())
				}
			}
			t.Errorf("%s has no series %v", name, labels)
			return -1
		}
		// Three completions (one streamed); four chats (one streamed) and four refused from Go, two more and one
		// refused from npm; every answered request decoded speculatively.
		chatOK, chatBad := 4.0, 3.0
		if npmRan {
			chatOK, chatBad = chatOK+2, chatBad+1
		}
		for _, c := range []struct {
			name      string
			labels    map[string]string
			least, at float64
		}{
			{"specforge_requests_total", map[string]string{"endpoint": "completions", "code": "200"}, 3, 3},
			{"specforge_requests_total", map[string]string{"endpoint": "chat_completions", "code": "200"}, chatOK, chatOK},
			{"specforge_requests_total", map[string]string{"endpoint": "chat_completions", "code": "400"}, chatBad, chatBad},
			{"specforge_requests_total", map[string]string{"endpoint": "chat_completions", "code": "404"}, 1, 1},
			{"specforge_request_duration_seconds", map[string]string{"endpoint": "completions"}, 3, 3},
			{"specforge_completion_tokens_total", nil, 120, 1e6},
			{"specforge_prompt_tokens_total", nil, 15, 1e6},
			{"specforge_decode_tokens_per_second", nil, 1, 1e7},
			{"specforge_acceptance_length", nil, 1, 4}, // 3 drafted tokens and the target's own per verification
			{"specforge_request_acceptance_length", nil, 3 + chatOK, 3 + chatOK},
			{"specforge_queue_depth", nil, 0, 0},
			{"specforge_requests_running", nil, 0, 0},
		} {
			if v := value(c.name, c.labels); v < c.least || v > c.at {
				t.Errorf("%s%v = %g, want it in [%g, %g]", c.name, c.labels, v, c.least, c.at)
			}
		}
	})
}

// npmRan records that the npm client's requests reached the server (the metrics count them).
var npmRan bool

// testServeNPM runs test/npm's script with the official openai npm client against the server: npm ci
// (offline-first: a warm npm cache needs no network), then node. It skips where node or npm is missing,
// unless SPECFORGE_REQUIRE_NODE is set (CI sets it after installing them): then it fails.
func testServeNPM(t *testing.T, baseURL, model string) {
	node, nodeErr := exec.LookPath("node")
	npm, npmErr := exec.LookPath("npm")
	if nodeErr != nil || npmErr != nil {
		if os.Getenv("SPECFORGE_REQUIRE_NODE") != "" {
			t.Fatalf("SPECFORGE_REQUIRE_NODE is set but node or npm is missing: %v, %v", nodeErr, npmErr)
		}
		t.Skipf("node or npm is missing (%v, %v): set SPECFORGE_REQUIRE_NODE to make this a failure", nodeErr, npmErr)
	}
	// A copy of the folder keeps node_modules out of the work tree.
	dir := t.TempDir()
	for _, f := range []string{"package.json", "package-lock.json", "serve_test.mjs"} {
		raw, err := os.ReadFile(filepath.Join("..", "..", "test", "npm", f))
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, f), raw, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ci := exec.CommandContext(ctx, npm, "ci", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error")
	ci.Dir = dir
	if out, err := ci.CombinedOutput(); err != nil {
		t.Fatalf("npm ci: %v\n%s", err, out)
	}
	script := exec.CommandContext(ctx, node, "serve_test.mjs", baseURL, model)
	script.Dir = dir
	var stderr strings.Builder
	script.Stderr = &stderr
	out, err := script.Output()
	npmRan = true
	if err != nil {
		t.Fatalf("node serve_test.mjs: %v\n%s%s", err, out, stderr.String())
	}
	var res struct {
		Text       string `json:"text"`
		BadStatus  int    `json:"badStatus"`
		BadMessage string `json:"badMessage"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("node printed %q: %v", out, err)
	}
	t.Logf("npm openai client: chat %q; bad request %d %q", res.Text, res.BadStatus, res.BadMessage)
}
