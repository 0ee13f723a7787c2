use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};

use super::common::{GpuArgs, ModelArgs};
use super::generate::SamplingArgs;
use super::AlreadyReported;
use crate::engine::{Engine, EngineOptions, GenerateOptions, Generation, StopReason};
use crate::tokenizer::{ChatMessage, ChatTemplate};

#[derive(clap::Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub load: crate::hf::LoadArgs,
    /// System prompt (kept when old turns are dropped and on /reset).
    #[arg(long)]
    pub system: Option<String>,
    /// Jinja chat template, or a tokenizer_config.json with one (default: the model's).
    #[arg(long)]
    pub chat_template: Option<PathBuf>,
    /// When a reply fills the context, keep the system prompt, drop half of
    /// the rest and go on, shifting the cached keys on the GPU instead of
    /// cutting the reply (llama.cpp's --context-shift; -v logs each shift).
    #[arg(long)]
    pub context_shift: bool,
    /// Context size in tokens (default: the model's, at most 4096; 0: the
    /// model's whole training context).
    #[arg(short = 'c', long)]
    pub ctx_size: Option<usize>,
    /// Tokens per reply at most (-1: until end of turn or a full context).
    #[arg(short = 'n', long, default_value_t = -1, allow_negative_numbers = true)]
    pub n_predict: i64,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// With piped input: one JSON object per message on stdout instead of
    /// the streamed reply (`turn`, `reused_tokens` and generate --json's
    /// fields: text, generated_ids, stop_reason, timings, context_shifts,
    /// prompt_ids = the ids processed after the reused ones; or `error` for
    /// a message that was skipped).
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub context: super::common::ContextArgs,
    #[command(flatten)]
    pub gpu: GpuArgs,
}

/// A conversation whose rendered tokens are (mostly) already in the KV cache.
struct Chat {
    engine: Engine,
    template: ChatTemplate,
    system: Option<ChatMessage>,
    /// [`Chat::system_prefix`], rendered once.
    system_ids: Vec<u32>,
    history: Vec<ChatMessage>,
    /// The ids the KV cache holds, position by position.
    cached: Vec<u32>,
    opts: GenerateOptions,
    /// Room a prompt must leave for the reply.
    reserve: usize,
    turn: usize,
    context_shift: bool,
}

/// Why a turn produced no reply without the chat having to end.
struct TurnSkipped(String);

/// A turn's reply: the generation and how many prompt ids the cache held.
struct Reply {
    generation: Generation,
    reused: usize,
}

impl Chat {
    fn reset(&mut self) {
        self.history = self.system.iter().cloned().collect();
        self.cached.clear();
        self.engine.model.reset();
    }

    /// The rendered conversation as ids.
    fn tokenize(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        let text = self.template.render(messages, true)?;
        let tok = &self.engine.tokenizer;
        Ok(tok.encode(&text, tok.adds_bos_to_rendered(&text), true)?)
    }

    /// The ids every prompt of this chat starts with because of the system
    /// prompt (BOS included): the common start of two conversations that
    /// differ only in their first user message. Rendering the system message
    /// alone would not do: Llama 2's format writes it inside the first user
    /// turn (alone it renders nothing), and a template that writes BOS
    /// itself gets no second one only through [`Chat::tokenize`].
    fn system_prefix(&self) -> Result<Vec<u32>> {
        let Some(system) = &self.system else {
            return Ok(Vec::new());
        };
        let with = |user| self.tokenize(&[system.clone(), ChatMessage::new("user", user)]);
        let (a, b) = (with("a")?, with("b")?);
        Ok(a.iter()
            .zip(&b)
            .take_while(|(x, y)| x == y)
            .map(|(x, _)| *x)
            .collect())
    }

    /// How many first ids of the prompt `ids` are the system prompt (with
    /// BOS): what a context shift keeps.
    fn system_tokens(&self, ids: &[u32]) -> usize {
        if self.system.is_none() {
            return crate::engine::keep_positions(ids, self.engine.tokenizer.bos_id(), 0);
        }
        self.system_ids
            .iter()
            .zip(ids)
            .take_while(|(a, b)| a == b)
            .count()
    }

    /// The prompt ids for `user` after the history, dropping the oldest
    /// turns (never the system prompt) until it fits.
    fn prompt(&mut self, user: &str) -> Result<std::result::Result<Vec<u32>, TurnSkipped>> {
        let n_ctx = self.engine.model.n_ctx;
        let budget = n_ctx.saturating_sub(self.reserve);
        let mut messages = self.history.clone();
        messages.push(ChatMessage::new("user", user));
        let mut ids = Vec::new();
        let fit = fit_messages(&mut messages, budget, |m| {
            ids = self.tokenize(m)?;
            Ok(ids.len())
        })?;
        match fit {
            Fit::Fits { dropped } => {
                if dropped > 0 {
                    eprintln!(
                        "context full: dropped the {dropped} oldest messages and re-processed the conversation"
                    );
                }
                messages.pop();
                self.history = messages;
                Ok(Ok(ids))
            }
            Fit::TooLong { tokens } => Ok(Err(TurnSkipped(format!(
                "the message needs a prompt of {tokens} tokens, which with {} tokens kept for the reply does not fit in the context of {n_ctx}; raise --ctx-size or shorten it",
                self.reserve
            )))),
        }
    }

    fn respond(
        &mut self,
        user: &str,
        on_text: impl FnMut(&str) -> bool,
    ) -> Result<std::result::Result<Reply, TurnSkipped>> {
        let ids = match self.prompt(user)? {
            Ok(ids) => ids,
            Err(skip) => return Ok(Err(skip)),
        };
        if ids.is_empty() {
            bail!("the chat template rendered an empty prompt");
        }
        self.turn += 1;
        let mut reuse = self
            .cached
            .iter()
            .zip(&ids)
            .take_while(|(a, b)| a == b)
            .count();
        // generate needs at least one token to produce the next one's logits.
        reuse = reuse.min(ids.len() - 1);
        self.engine.model.truncate(reuse);
        // Kept in step with the cache even if this turn fails half way.
        self.cached.truncate(reuse);
        tracing::info!(
            "turn {}: prompt of {} tokens, {reuse} reused from the cache, {} processed",
            self.turn,
            ids.len(),
            ids.len() - reuse
        );
        if self.context_shift {
            self.opts.context_shift = Some(self.system_tokens(&ids));
        }
        let g = self.engine.generate(&ids[reuse..], &self.opts, on_text)?;
        // Stops other than end-of-turn leave the last sampled token unprocessed.
        self.cached = ids;
        self.cached.extend(&g.generated_ids);
        // A shift dropped positions from the cache: drop the same ids.
        for &(keep, discard) in &g.context_shifts {
            self.cached
                .drain(keep..(keep + discard).min(self.cached.len()));
        }
        self.cached.truncate(self.engine.model.n_past());
        self.history.push(ChatMessage::new("user", user));
        self.history
            .push(ChatMessage::new("assistant", g.text.clone()));
        if g.stop_reason == StopReason::ContextFull {
            eprintln!("(reply cut: the context is full; older turns will be dropped; --context-shift goes on instead)");
        }
        Ok(Ok(Reply {
            generation: g,
            reused: reuse,
        }))
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Fit {
    Fits {
        dropped: usize,
    },
    /// Even the system prompt and the last message alone take `tokens`.
    TooLong {
        tokens: usize,
    },
}

/// Drops the oldest messages after the system prompt until `count` (the
/// rendered prompt's length) is at most `budget`; the last message is kept.
/// The last `count` call is for the messages left.
fn fit_messages(
    messages: &mut Vec<ChatMessage>,
    budget: usize,
    mut count: impl FnMut(&[ChatMessage]) -> Result<usize>,
) -> Result<Fit> {
    let first = usize::from(messages.first().is_some_and(|m| m.role == "system"));
    let mut dropped = 0;
    loop {
        let tokens = count(messages)?;
        if tokens <= budget {
            return Ok(Fit::Fits { dropped });
        }
        if messages.len() - first <= 1 {
            return Ok(Fit::TooLong { tokens });
        }
        // A user turn goes with the assistant reply that follows it, so the
        // conversation keeps alternating as templates require.
        messages.remove(first);
        dropped += 1;
        if messages.len() - first > 1 && messages[first].role == "assistant" {
            messages.remove(first);
            dropped += 1;
        }
    }
}

pub fn run(args: &ChatArgs) -> Result<()> {
    let interactive = std::io::stdin().is_terminal();
    if interactive && args.json {
        bail!("--json is for piped input (one message per line); at a terminal, chat without it");
    }
    let sampler = args.sampling.params()?;
    let format = args.sampling.output_format()?;
    let model = args.model.resolve(args.quiet || args.json)?;
    let engine = Engine::load(&EngineOptions {
        n_batch: None,
        n_parallel: 1,
        model,
        load: args.load.spec(),
        gpu: args.gpu.options(),
        context: args.context.options()?,
        n_ctx: args.ctx_size,
        quiet: args.quiet || args.json,
    })?;
    let template = match &args.chat_template {
        Some(p) => ChatTemplate::from_file(p)?,
        None => ChatTemplate::from_gguf(&engine.gguf)
            .with_context(|| engine.path.display().to_string())?,
    };
    let n_ctx = engine.model.n_ctx;
    let n_predict = (args.n_predict >= 0).then_some(args.n_predict as usize);
    if n_predict == Some(0) {
        bail!("-n must be at least 1 (or -1 for no limit)");
    }
    let reserve = n_predict.unwrap_or(256).min(n_ctx / 4).max(1);
    let system = args
        .system
        .as_ref()
        .map(|s| ChatMessage::new("system", s.clone()));
    let mut chat = Chat {
        engine,
        template,
        history: system.iter().cloned().collect(),
        system,
        system_ids: Vec::new(),
        cached: Vec::new(),
        opts: GenerateOptions {
            n_predict,
            sampler,
            stop: Vec::new(),
            ignore_eos: false,
            top_logits: 0,
            context_shift: None,
            format,
        },
        reserve,
        turn: 0,
        context_shift: args.context_shift,
    };
    if chat.context_shift {
        chat.system_ids = chat.system_prefix()?;
    }
    if interactive {
        interactive_loop(&mut chat)
    } else {
        piped_loop(&mut chat, args.json)
    }
}

/// One user message per stdin line, one reply per stdout line.
fn piped_loop(chat: &mut Chat, json: bool) -> Result<()> {
    let mut failed = false;
    let mut stdout = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let line = line.context("cannot read stdin")?;
        let msg = line.trim();
        match msg {
            "" => continue,
            "/exit" => break,
            "/reset" => {
                chat.reset();
                eprintln!("(conversation reset)");
                continue;
            }
            _ => {}
        }
        let mut closed = false;
        let r = chat.respond(msg, |t| {
            if json {
                return true;
            }
            // A closed pipe ends the reply quietly; the loop then ends too.
            closed = write!(stdout, "{t}").and_then(|_| stdout.flush()).is_err();
            !closed
        })?;
        let mut line = String::new();
        match r {
            Ok(reply) if json => {
                let mut v = serde_json::to_value(&reply.generation)?;
                v["turn"] = chat.turn.into();
                v["reused_tokens"] = reply.reused.into();
                line = serde_json::to_string(&v)?;
            }
            Ok(_) => {}
            Err(TurnSkipped(why)) => {
                eprintln!("error: {why}");
                failed = true;
                if json {
                    line = serde_json::json!({ "error": why }).to_string();
                }
            }
        }
        // An empty line for a skipped turn keeps replies aligned with messages.
        if closed
            || writeln!(stdout, "{line}")
                .and_then(|_| stdout.flush())
                .is_err()
        {
            break;
        }
    }
    if failed {
        return Err(AlreadyReported.into());
    }
    Ok(())
}

fn interactive_loop(chat: &mut Chat) -> Result<()> {
    let mut rl = rustyline::DefaultEditor::new().context("cannot open the terminal")?;
    // After the editor: it replaces the SIGINT handler when created (and
    // needs none while reading, as its raw mode turns Ctrl-C into a key).
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
            .context("cannot install the Ctrl-C handler")?;
    }
    eprintln!("/reset clears the conversation, /exit or Ctrl-D quits, Ctrl-C stops a reply");
    let mut stdout = std::io::stdout();
    loop {
        let line = match rl.readline("> ") {
            Ok(l) => l,
            // Ctrl-C at the prompt only discards the line being typed.
            Err(rustyline::error::ReadlineError::Interrupted) => continue,
            Err(rustyline::error::ReadlineError::Eof) => break,
            Err(e) => return Err(e).context("cannot read the terminal"),
        };
        let msg = line.trim();
        if msg.is_empty() {
            continue;
        }
        let _ = rl.add_history_entry(msg);
        match msg {
            "/exit" | "/quit" => break,
            "/reset" => {
                chat.reset();
                eprintln!("(conversation reset)");
                continue;
            }
            _ => {}
        }
        interrupted.store(false, Ordering::SeqCst);
        let r = chat.respond(msg, |t| {
            let _ = write!(stdout, "{t}").and_then(|_| stdout.flush());
            !interrupted.load(Ordering::SeqCst)
        });
        println!();
        match r {
            Ok(Ok(r)) if r.generation.stop_reason == StopReason::Interrupted => {
                eprintln!("(reply stopped)")
            }
            Ok(Ok(_)) => {}
            Ok(Err(TurnSkipped(why))) => eprintln!("error: {why}"),
            // A failed turn (e.g. a template error) need not end the session.
            Err(e) => eprintln!("error: {e:#}"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(roles: &[&str]) -> Vec<ChatMessage> {
        roles
            .iter()
            .enumerate()
            .map(|(i, r)| ChatMessage::new(*r, format!("m{i}")))
            .collect()
    }

    /// Ten tokens per message.
    fn count(m: &[ChatMessage]) -> Result<usize> {
        Ok(m.len() * 10)
    }

    #[test]
    fn oldest_turns_go_first_and_the_system_prompt_stays() {
        let mut m = conv(&["system", "user", "assistant", "user", "assistant", "user"]);
        assert_eq!(
            fit_messages(&mut m, 40, count).unwrap(),
            Fit::Fits { dropped: 2 }
        );
        let kept: Vec<&str> = m.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(kept, ["m0", "m3", "m4", "m5"]);
    }

    #[test]
    fn a_conversation_that_fits_is_untouched() {
        let mut m = conv(&["user", "assistant", "user"]);
        assert_eq!(
            fit_messages(&mut m, 30, count).unwrap(),
            Fit::Fits { dropped: 0 }
        );
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn a_message_that_cannot_fit_alone_is_reported() {
        let mut m = conv(&["system", "user", "assistant", "user"]);
        assert_eq!(
            fit_messages(&mut m, 15, count).unwrap(),
            Fit::TooLong { tokens: 20 }
        );
        let mut m = conv(&["user"]);
        assert_eq!(
            fit_messages(&mut m, 5, count).unwrap(),
            Fit::TooLong { tokens: 10 }
        );
    }
}
