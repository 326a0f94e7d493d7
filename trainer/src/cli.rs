//! The command line of `modelcommons-trainer` (the binary FineTuneJob, RLHFRound and
//! ModelDeployment pods run). In the library so that tests parse the argument lists the
//! operator builds (`modelcommons_crds::contract`) with this very parser.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "modelcommons-trainer",
    version,
    about = "Fine-tune, align, evaluate and serve Llama-family models (libtorch)",
    long_about = "Fine-tune, align, evaluate and serve Llama-family models in the Hugging Face layout \
                  (config.json, *.safetensors, tokenizer.json) with libtorch.\n\n\
                  In a FineTuneJob pod (MODELCOMMONS_FINETUNEJOB and MODELCOMMONS_NAMESPACE set) \
                  `train` and `dpo` write progress and results into the object's status; \
                  otherwise they draw a progress bar (on a terminal) or log lines."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a tiny network; proves libtorch loads and optimizes here.
    Selftest {
        #[arg(long, default_value_t = 300)]
        steps: usize,
        /// Stay on the CPU even when a GPU is present.
        #[arg(long)]
        cpu: bool,
    },
    /// Write a tiny random Llama (config, safetensors, tokenizer, chat template).
    Init {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 7)]
        seed: i64,
        #[arg(long, default_value_t = 259)]
        vocab_size: i64,
        #[arg(long, default_value_t = 64)]
        hidden_size: i64,
        #[arg(long, default_value_t = 128)]
        intermediate_size: i64,
        #[arg(long, default_value_t = 2)]
        layers: i64,
        #[arg(long, default_value_t = 4)]
        heads: i64,
        #[arg(long, default_value_t = 2)]
        kv_heads: i64,
    },
    /// Supervised fine-tuning, full or LoRA, resumable from checkpoints.
    Train(crate::train::TrainArgs),
    /// Loss, perplexity and task metrics on held-out data, judged against targets.
    Eval(crate::train::eval::EvalArgs),
    /// Direct Preference Optimization on {prompt, chosen, rejected} pairs.
    Dpo(crate::train::dpo::DpoArgs),
    /// Sample completions (e.g. the response pairs of an RLHF round).
    Generate(GenerateArgs),
    /// Throughput and peak memory of one case (see hack/bench-trainer.sh for the comparison).
    Bench(crate::bench::BenchArgs),
    /// Serve the model over an OpenAI-compatible HTTP API (API keys, rate limits, usage).
    Serve(crate::serve::Args),
}

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// The model directory (full model or LoRA output).
    #[arg(long)]
    pub model: PathBuf,
    /// One prompt; the completion streams to stdout.
    #[arg(long, conflicts_with = "prompts")]
    pub prompt: Option<String>,
    /// JSONL of {"prompt": …} or {"messages": […]}; writes {"prompt", "responses"} lines.
    #[arg(long, requires = "out")]
    pub prompts: Option<PathBuf>,
    /// Output JSONL (with --prompts).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Responses per prompt (2 for preference pairs).
    #[arg(long, default_value_t = 1)]
    pub n: usize,
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f64,
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop strings (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// auto, cpu, or cuda[:N].
    #[arg(long, default_value = "auto")]
    pub device: String,
}

#[cfg(test)]
mod tests {
    //! The operator↔pod contract: every argument list the operator builds
    //! (`modelcommons_crds::contract`) parses with this parser, to the values the spec says.

    use std::path::Path;

    use clap::Parser;
    use modelcommons_crds::contract::{KEYS_DIR, eval_args, serve_args, train_args};
    use modelcommons_crds::deployment::ModelDeployment;
    use modelcommons_crds::finetune::FineTuneJob;

    use super::{Cli, Command};
    use crate::serve::DeviceChoice;
    use crate::train::Method;

    const FINETUNE: &str = include_str!("../../examples/contract-review/04-finetune.yaml");
    const DEPLOYMENT: &str = include_str!("../../examples/contract-review/06-deployment.yaml");

    fn parse(args: &[String]) -> Command {
        let argv = std::iter::once("modelcommons-trainer".to_string()).chain(args.iter().cloned());
        match Cli::try_parse_from(argv) {
            Ok(cli) => cli.command,
            Err(e) => panic!("the trainer refuses the operator's arguments {args:?}: {e}"),
        }
    }

    fn example_ftj() -> FineTuneJob {
        serde_yaml::from_str(FINETUNE).unwrap()
    }

    fn example_md() -> ModelDeployment {
        // The file's second document (the first is the API-key Secret).
        let doc = serde_yaml::Deserializer::from_str(DEPLOYMENT)
            .nth(1)
            .expect("a second document");
        serde::Deserialize::deserialize(doc).unwrap()
    }

    #[test]
    fn train_arguments_parse_to_the_spec_lora_and_full() {
        let mut ftj = example_ftj();
        let Command::Train(t) = parse(&train_args(&ftj.spec, "/mnt/pvc/store/v1/train")) else {
            panic!("not train");
        };
        let h = &ftj.spec.hyperparameters;
        assert_eq!(t.model, Path::new("/mnt/pvc/models/tiny-llama"));
        assert_eq!(t.data, Path::new("/mnt/pvc/store/v1/train/train.jsonl"));
        assert_eq!(
            t.eval_data.as_deref(),
            Some(Path::new("/mnt/pvc/store/v1/train/eval.jsonl"))
        );
        assert_eq!(t.out, Path::new("/mnt/pvc/models/clause-review-lora"));
        assert_eq!(
            t.expect_base_sha256.as_deref(),
            Some(ftj.spec.base_model.sha256.as_str())
        );
        assert_eq!(t.method, Method::Lora);
        assert_eq!((t.lora_r, t.lora_alpha, t.lora_dropout), (16, 32.0, 0.05));
        assert_eq!(t.lora_targets, ["q_proj", "v_proj"]);
        assert_eq!(t.epochs, u64::from(h.epochs));
        assert_eq!(t.lr, 0.0002);
        assert_eq!((t.batch_size, t.grad_accum), (8, 2));
        assert_eq!((t.warmup_steps, t.max_seq_len, t.seed), (10, 1024, 42));
        assert_eq!((t.checkpoint_every, t.keep_checkpoints), (50, 2));
        assert_eq!(t.device, "auto", "a GPU job lets the trainer find its GPU");

        ftj.spec.method.kind = modelcommons_crds::finetune::MethodType::Full;
        ftj.spec.method.lora = None;
        ftj.spec.resources.gpus_per_worker = 0;
        ftj.spec.hyperparameters.max_steps = Some(300);
        let Command::Train(t) = parse(&train_args(&ftj.spec, "/data/v1/train")) else {
            panic!("not train");
        };
        assert_eq!(t.method, Method::Full);
        assert_eq!(t.max_steps, Some(300));
        assert_eq!(t.device, "cpu");
    }

    #[test]
    fn eval_arguments_parse_to_the_spec() {
        let mut ftj = example_ftj();
        ftj.spec.resources.gpus_per_worker = 0;
        let Command::Eval(e) = parse(&eval_args(&ftj.spec, "pvc://store/datanets/v1")) else {
            panic!("not eval");
        };
        assert_eq!(e.model, Path::new("/mnt/pvc/models/clause-review-lora"));
        assert_eq!(
            e.baseline.as_deref(),
            Some(Path::new("/mnt/pvc/models/tiny-llama"))
        );
        assert_eq!(
            e.data,
            Path::new("/mnt/pvc/store/datanets/v1/holdout.jsonl")
        );
        assert_eq!(e.max_seq_len, 1024);
        assert_eq!(
            e.out.as_deref(),
            Some(Path::new(modelcommons_crds::contract::EVAL_RESULT_FILE))
        );
        assert_eq!(e.device, "cpu");
    }

    #[test]
    fn serve_arguments_parse_to_the_spec() {
        let mut md = example_md();
        let Command::Serve(s) = parse(&serve_args(&md, "/mnt/pvc/models/x", "ab12")) else {
            panic!("not serve");
        };
        assert_eq!(s.model, Path::new("/mnt/pvc/models/x"));
        assert_eq!(s.listen.port(), 8000);
        assert_eq!(s.served_model_name.as_deref(), Some("clause-review"));
        assert_eq!(s.expect_sha256.as_deref(), Some("ab12"));
        assert_eq!(s.api_keys.as_deref(), Some(Path::new(KEYS_DIR)));
        assert_eq!(s.allowed_consumers, ["legal-ops-agent", "procurement-bot"]);
        assert_eq!(s.requests_per_minute, Some(60));
        assert_eq!(s.tokens_per_minute, Some(40000));
        assert!(matches!(s.device, DeviceChoice::Cuda));

        md.spec.access.public = true;
        md.spec.access.allowed_consumers.clear();
        md.spec.rate_limits = None;
        md.spec.resources.gpus = 0;
        let Command::Serve(s) = parse(&serve_args(&md, "/models/x", "ab12")) else {
            panic!("not serve");
        };
        assert_eq!(s.api_keys, None, "a public endpoint has no keys");
        assert!(s.allowed_consumers.is_empty());
        assert_eq!(s.requests_per_minute, None);
        assert!(matches!(s.device, DeviceChoice::Cpu));
    }
}
