//! TEMPORARY stand-in until `crate::generate` lands: a fake model that echoes the prompt's
//! bytes, slowly, so the HTTP layer can be exercised.

use std::path::Path;

use super::engine::{Backend, Finish, JobError, Prompt, Sampling};

/// The fake.
#[derive(Debug)]
pub struct Echo;

/// A generation of the fake.
#[derive(Debug)]
pub struct EchoGen {
    ids: Vec<i64>,
    at: usize,
    left: usize,
}

/// Loads the fake.
pub fn load(dir: &Path, _device: tch::Device) -> anyhow::Result<Echo> {
    anyhow::ensure!(
        dir.join("config.json").exists(),
        "no config.json in {}",
        dir.display()
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    Ok(Echo)
}

impl Backend for Echo {
    type Gen = EchoGen;
    fn context_length(&self) -> usize {
        512
    }
    fn encode(&self, prompt: &Prompt) -> Result<Vec<i64>, JobError> {
        Ok(match prompt {
            Prompt::Text(t) => t.bytes().map(i64::from).collect(),
            Prompt::Tokens(t) => t.clone(),
            Prompt::Chat(turns) => turns
                .iter()
                .flat_map(|t| t.content.bytes().map(i64::from))
                .collect(),
        })
    }
    fn start(&self, ids: Vec<i64>, _: &Sampling, max_tokens: usize) -> Result<EchoGen, JobError> {
        Ok(EchoGen {
            ids,
            at: 0,
            left: max_tokens,
        })
    }
    fn step(&self, g: &mut EchoGen) -> anyhow::Result<Option<String>> {
        if g.left == 0 {
            return Ok(None);
        }
        g.left -= 1;
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = g.ids[g.at % g.ids.len()];
        g.at += 1;
        Ok(Some(char::from(b as u8).to_string()))
    }
    fn finish(&self, _: &EchoGen) -> Finish {
        Finish::Length
    }
}
