"""Render experiments/lsh_strict/eval.log (run.sh) as results.md."""
import re
import sys

log, steps = sys.argv[1], sys.argv[2]
bpb, targets, leak = {}, {}, {}
tag = None
for line in open(log):
    line = line.rstrip("\n")
    m = re.match(r"\[(\w+) (\w+)(?: (\w+))?\] ", line)
    if m:
        tag = m.groups()
        continue
    if line.startswith("eval: ") and tag:
        form, split, how = tag
        bpb[form, split, how] = float(re.search(r"\| ([0-9.]+) bits per byte", line).group(1))
        targets[split] = int(re.search(r"\| (\d+) targets", line).group(1))
    elif line.startswith("seq_len ") and tag:
        fresh = re.search(r"fresh hashing ([0-9.]+)% \(moved at all ([0-9.]+)%, mean \|dloss\| ([0-9.e+-]+) nats\)", line)
        frozen = re.search(r"buckets held fixed ([0-9.]+)%", line)
        leak[tag[0], tag[1]] = (float(fresh.group(1)), float(fresh.group(2)), float(fresh.group(3)),
                                float(frozen.group(1)))

print("# Standard against strictly causal LSH attention (issue 13, part 2)\n")
print("Command: `experiments/lsh_strict/run.sh %s` (training commands in standard.log and strict.log, every eval and" % steps)
print("leak command in eval.log, curves in curves.png). Both models: 2 LSH layers (no local layers), d_model 128,")
print("d_ff 512, 4 heads of 32, 2 hashes, chunk 32 (64 buckets), seq_len 1024, batch 4, %s steps of AdamW (lr 2e-3," % steps)
print("warmup 100, cosine), seed 1337, tinyshakespeare; one OpenMP thread each, trained side by side. Scored on the")
print("whole validation and test splits (%s and %s targets) with the hash rotations of evaluation." % (
    targets.get("validation", "?"), targets.get("test", "?")))
print("*Train form*: `eval --form train` (each 1024-byte window at once: LSH sorts the whole window, as in training).")
print("*Decode form*: `eval --form decode` (the decoder, one byte at a time: no byte after the one predicted is seen).\n")
print("| trained with | split | bits/byte, train form | bits/byte, decode form | train - decode |")
print("|---|---|---|---|---|")
for form in ("standard", "strict"):
    for split in ("validation", "test"):
        t, d = bpb.get((form, split, "train")), bpb.get((form, split, "decode"))
        if t is None or d is None:
            continue
        print(f"| lsh_form={form} | {split} | {t:.4f} | {d:.4f} | {t - d:+.4f} |")
print()
print("One-token causality of the trained models (`build/lsh_leak ckpt=...`: 40 sequences of 1024 printable bytes,")
print("token j changed, losses at positions i < j compared; a move above 1e-5 nats counts). In float the grouping of")
print("sums alone moves a strict model's losses (a later item can move a query to other columns of its chunk tile),")
print("so the same measurement is repeated in double precision (`build/lsh_leak_f64`, the float weights widened),")
print("where rounding moves losses by ~1e-15 nats and anything larger is the sort:\n")
print("| trained with | precision | earlier losses moved > 1e-5 nats, fresh hashing | moved at all | mean abs change, nats | buckets held fixed |")
print("|---|---|---|---|---|---|")
for form in ("standard", "strict"):
    for kind, prec in (("leak", "float"), ("leak_f64", "double")):
        if (form, kind) in leak:
            a, b, c, f = leak[form, kind]
            print(f"| lsh_form={form} | {prec} | {a:.2f}% | {b:.2f}% | {c:.2e} | {f:.2f}% |")

sv, ss = ("standard", "validation"), ("strict", "validation")
if all((f, s, h) in bpb for f in ("standard", "strict") for s in ("validation", "test") for h in ("train", "decode")):
    gap = {(f, s): bpb[f, s, "train"] - bpb[f, s, "decode"] for f in ("standard", "strict") for s in ("validation", "test")}
    print("\nWhat this shows:")
    print(f"- **The standard form's training-form score is optimistic.** Its train form beats its own decode form by "
          f"{-gap['standard', 'validation']:.3f} bits per byte on validation and {-gap['standard', 'test']:.3f} on test, "
          "two disjoint splits of about 56K bytes each: the same weights on the same bytes. The two forms of the "
          "standard scheme differ in two ways: the train form lets a byte's loss depend on where later bytes hash "
          "(the table above: ~90% of earlier losses move when one later byte changes), and it shows a query its "
          "chunk and the one before, other buckets' items included, where decoding shows every earlier item of its "
          "own bucket. This table cannot split the gap between the two; what it does show is that the score the "
          "paper's form reports in training form is not what the model achieves when it generates. That is a "
          "finding about the scheme (the paper's, trax's and Hugging Face's), not noise: the strict model, scored "
          f"the same two ways, agrees to {max(abs(gap['strict', 'validation']), abs(gap['strict', 'test'])):.4f}.")
    print(f"- **Scored causally, the strict model is as good.** Decode form, validation: standard "
          f"{bpb['standard', 'validation', 'decode']:.4f}, strict {bpb['strict', 'validation', 'decode']:.4f}; test: "
          f"{bpb['standard', 'test', 'decode']:.4f} vs {bpb['strict', 'test', 'decode']:.4f}. The standard model's "
          f"lead in train form ({bpb['standard', 'validation', 'train']:.4f} vs "
          f"{bpb['strict', 'validation', 'train']:.4f} on validation) does not survive causal scoring.")
    print("- Not supported: anything about larger models, longer contexts or longer training (one seed, 2 layers, "
          "12M training tokens of one 1 MB text on a CPU). The size of the gap will depend on all of them.")
