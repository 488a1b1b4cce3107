package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/export"
	"github.com/specforge/specforge/internal/pipeline"
	"github.com/specforge/specforge/internal/tensor"
)

func exportCommand() *cobra.Command {
	var (
		from, to, out, targetDir, dtype string
		o                               export.Options
	)
	cmd := &cobra.Command{
		Use:   "export --checkpoint DIR --to sglang|vllm|speculators --out DIR",
		Short: "Write a draft in the layout SGLang or vLLM loads, validated by reading it back",
		Long: `Write a draft in the layout a serving engine loads:

  sglang       LlamaForCausalLMEagle3, midlayer.* weights, aux layer ids in eagle_config ("output of layer i")
  vllm         the same, plus the top-level eagle_aux_hidden_state_layer_ids vLLM reads ("input of layer i+1")
  speculators  Eagle3Speculator (vllm serve DIR), layers.0.* weights, norm_before_residual false, the verifier

--checkpoint is a training checkpoint (a folder with state.json), a training run folder (its draft, or its
latest checkpoint), or a draft folder in any of the layouts above. Weights are bf16 unless --dtype says
otherwise; d2t is int64, t2d bool, and the embedding is left out (engines share the target's) unless the draft
is narrower than the target. --target checks the head against the target it will serve and fills what the
file leaves to the target (default aux layers, the verifier).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := export.ParseFormat(to)
			if err != nil {
				return err
			}
			if o.DType, err = tensor.ParseShortName(dtype); err != nil {
				return fmt.Errorf("--%w", err) // --dtype "x": want ...
			}
			res, err := pipeline.Export(from, targetDir, out, f, o, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			printExport(cmd.OutOrStdout(), out, f, res)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&from, "checkpoint", "", "training checkpoint, run folder or draft folder to export")
	fl.StringVar(&to, "to", "sglang", "layout: sglang, vllm or speculators")
	fl.StringVar(&out, "out", "", "folder to write config.json and model.safetensors into")
	fl.StringVar(&targetDir, "target", "", "target model folder: check the head against it and fill what the file leaves to it")
	fl.StringVar(&dtype, "dtype", "bf16", "weight dtype: bf16, f16 or f32")
	fl.StringVar(&o.Verifier, "verifier", "", "speculators: the verifier's hub name or path (default: the target the draft was trained for)")
	fl.IntVar(&o.SpeculativeTokens, "speculative-tokens", 3, "speculators: the default proposal length")
	fl.BoolVar(&o.Force, "force", false, "replace an output folder that holds something other than an earlier export (a model, other files)")
	cmd.MarkFlagRequired("checkpoint")
	cmd.MarkFlagRequired("out")
	return cmd
}

func printExport(w io.Writer, out string, f export.Format, res *pipeline.Exported) {
	src, im, o := res.Source, res.Imported, res.Options
	c := &res.Draft.Config
	size := int64(0)
	if st, err := os.Stat(filepath.Join(out, "model.safetensors")); err == nil {
		size = st.Size()
	}
	fmt.Fprintf(w, "exported %s (%s) to %s as %s: hidden %d, draft vocabulary %d of %d, weights in %s (%.1f MB)\n",
		src, im.Format, out, f, c.HiddenSize, c.DraftVocabSize, c.VocabSize, o.DType, float64(size)/1e6)
	ids := draft.VLLMAuxIDs(c.AuxLayers)
	fmt.Fprintf(w, "aux layers: outputs of 0-based layers %v (read from %s)", c.AuxLayers, im.AuxSource)
	switch f {
	case export.SGLang:
		fmt.Fprintf(w, "; eagle_config.eagle_aux_hidden_state_layer_ids = %v (SGLang adds 1 itself)\n", c.AuxLayers)
		fmt.Fprintf(w, "serve: python -m sglang.launch_server --model <target> --speculative-algorithm EAGLE3 --speculative-draft-model-path %s --speculative-num-steps 3 --speculative-eagle-topk 1 --speculative-num-draft-tokens 4\n", out)
	case export.VLLM:
		fmt.Fprintf(w, "; top-level eagle_aux_hidden_state_layer_ids = %v (vLLM: input of layer k), eagle_config keeps %v\n", ids, c.AuxLayers)
		fmt.Fprintf(w, "serve: vllm serve <target> --speculative-config '{\"method\": \"eagle3\", \"model\": \"%s\", \"num_speculative_tokens\": 3}'\n", out)
	case export.Speculators:
		fmt.Fprintf(w, "; eagle_aux_hidden_state_layer_ids = %v (vLLM: input of layer k)\n", ids)
		fmt.Fprintf(w, "serve: vllm serve %s\n", out)
	}
	fmt.Fprintln(w, "what each engine hands the draft:")
	for _, r := range export.AuxReadings(c, f) {
		mark := "ok"
		if !r.Reads(c.AuxLayers) {
			mark = "WRONG"
		}
		fmt.Fprintf(w, "  %-5s %s\n", mark, r)
	}
	if c.FCNorm || c.NormOutput {
		engines := "vLLM since PR #42764, SGLang since PR #24663 (both May 2026)"
		if f == export.Speculators {
			engines = "vLLM since PR #46488 (June 2026; before it, speculators configs lose both keys)"
		}
		fmt.Fprintf(w, "EAGLE-3.1 options (fc_norm %v, norm_output %v): served by %s; an older engine ignores them and computes another function\n", c.FCNorm, c.NormOutput, engines)
	}
	if n := c.Layers(); n > 1 {
		fmt.Fprintf(w, "%d decoder layers: served by vLLM since PR #26164 (October 2025), not by SGLang\n", n)
	}
}
