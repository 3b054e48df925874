// llama.cpp peer for the LLM benchmark, through node-llama-cpp's prebuilt CPU binary.
//
//   node bench/peers/llama_cpp_bench.mjs MODEL.gguf [--threads N] [--prompt 512] [--gen 128]
//                                         [--reps R]
//
// Loads the model on the CPU (gpu: false, no build, no download), then measures
//   prompt: evaluating `prompt` tokens in one go (batch = prompt), tokens/s;
//   gen:    generating `gen` tokens one at a time after that prompt (greedy), tokens/s;
// best of `reps` repetitions (a fresh context sequence each time), and prints one JSON line
// with peak RSS (maxRSS of this process, which holds the mapped model). The prompt is a fixed
// text tokenized and repeated to length, so every run feeds the same tokens.
import { getLlama, LlamaLogLevel } from "node-llama-cpp";
import process from "node:process";

function parseArgs(argv) {
  const o = { model: null, threads: 1, prompt: 512, gen: 128, reps: 2 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = () => {
      const v = Number(argv[++i]);
      if (!Number.isInteger(v) || v < 1) throw new Error(`${a} needs a positive integer`);
      return v;
    };
    if (a === "--threads") o.threads = num();
    else if (a === "--prompt") o.prompt = num();
    else if (a === "--gen") o.gen = num();
    else if (a === "--reps") o.reps = num();
    else if (!a.startsWith("-") && !o.model) o.model = a;
    else throw new Error(`unexpected argument ${a}`);
  }
  if (!o.model) throw new Error("usage: llama_cpp_bench.mjs MODEL.gguf [--threads N] [--prompt 512] [--gen 128] [--reps R]");
  return o;
}

const now = () => Number(process.hrtime.bigint()) / 1e9;

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const llama = await getLlama({
    gpu: false,
    build: "never",
    skipDownload: true,
    maxThreads: o.threads,
    logLevel: LlamaLogLevel.error,
  });
  const tLoad0 = now();
  const model = await llama.loadModel({ modelPath: o.model, gpuLayers: 0 });
  const loadS = now() - tLoad0;
  const text =
    "Once upon a time, in a small town by the sea, there lived a curious girl who loved " +
    "to collect shells and tell stories about the creatures that lived inside them. ";
  const base = model.tokenize(text);
  const prompt = [];
  while (prompt.length < o.prompt) prompt.push(...base);
  prompt.length = o.prompt;

  const context = await model.createContext({
    contextSize: o.prompt + o.gen + 16,
    batchSize: o.prompt,
    threads: { ideal: o.threads, min: o.threads },
    sequences: 1,
  });
  let bestPrompt = 0;
  let bestGen = 0;
  let generated = 0;
  for (let r = 0; r < o.reps; r++) {
    const seq = context.getSequence();
    const t0 = now();
    await seq.evaluateWithoutGeneratingNewTokens(prompt);
    const t1 = now();
    bestPrompt = Math.max(bestPrompt, o.prompt / (t1 - t0));
    // generation: feed the last prompt token again to start; each yielded token is one step
    let n = 0;
    const t2 = now();
    for await (const tok of seq.evaluate([prompt[prompt.length - 1]], { temperature: 0 })) {
      void tok;
      if (++n >= o.gen) break;
    }
    const t3 = now();
    generated = n;
    bestGen = Math.max(bestGen, n / (t3 - t2));
    seq.dispose();
  }
  const ru = process.resourceUsage();
  const out = {
    peer: "llama.cpp (node-llama-cpp prebuilt, CPU)",
    model: o.model,
    threads: o.threads,
    prompt_tokens: o.prompt,
    gen_tokens: generated,
    prompt_tok_s: Number(bestPrompt.toFixed(2)),
    gen_tok_s: Number(bestGen.toFixed(2)),
    load_s: Number(loadS.toFixed(2)),
    peak_rss_mb: Number((ru.maxRSS / 1024).toFixed(1)),
    reps: o.reps,
  };
  console.log(JSON.stringify(out));
  await context.dispose();
  await model.dispose();
  await llama.dispose();
}

main().catch((e) => {
  console.error(`llama_cpp_bench: ${e.message}`);
  process.exit(1);
});
