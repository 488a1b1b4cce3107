package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/specforge/specforge/internal/llama2c"
)

func convertCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "convert",
		Short: "Convert models from other formats into Hugging Face folders",
	}
	var checkpoint, tokenizer, out string
	l2c := &cobra.Command{
		Use:   "llama2c --checkpoint model.bin [--tokenizer tokenizer.bin] --out DIR",
		Short: "Convert a llama2.c checkpoint (and its tokenizer) into a Hugging Face Llama folder",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ck, err := llama2c.Read(checkpoint)
			if err != nil {
				return err
			}
			var vocab *llama2c.Vocab
			if tokenizer != "" { // read before writing anything, so a bad tokenizer leaves no folder behind
				if vocab, err = llama2c.ReadVocab(tokenizer, ck.Vocab); err != nil {
					return err
				}
			}
			if err := ck.WriteHF(out); err != nil {
				return err
			}
			if vocab != nil {
				if err := vocab.WriteHF(out, ck.SeqLen); err != nil {
					return err
				}
			}
			p := ck.Params
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: Llama, %d layers, hidden %d, %d/%d heads, vocabulary %d\n",
				out, p.Layers, p.Dim, p.Heads, p.KVHeads, p.Vocab)
			return nil
		},
	}
	l2c.Flags().StringVar(&checkpoint, "checkpoint", "", "llama2.c checkpoint (.bin)")
	l2c.Flags().StringVar(&tokenizer, "tokenizer", "", "llama2.c tokenizer (tokenizer.bin) to convert to tokenizer.json")
	l2c.Flags().StringVar(&out, "out", "", "output folder")
	l2c.MarkFlagRequired("checkpoint")
	l2c.MarkFlagRequired("out")
	cmd.AddCommand(l2c)
	return cmd
}
