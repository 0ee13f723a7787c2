//! A chat reply read for what it holds besides the answer: reasoning in
//! `<think>...</think>` (DeepSeek R1 and its Llama distills, QwQ; returned
//! as `reasoning_content`, llama-server's `--reasoning-format deepseek`,
//! and Ollama's `message.thinking`) and tool calls ([`super::tools`]).

use std::borrow::Cow;

use std::sync::Arc;

use super::tools::{Reply, ReplyStream, ToolUse};
use crate::engine::json_output::Trigger;
use crate::engine::OutputFormat;

const THINK_OPEN: &str = "<think>";
const THINK_CLOSE: &str = "</think>";

/// `serve --reasoning-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReasoningFormat {
    /// Replies as written, `<think>` blocks included.
    None,
    /// Reasoning split off into its own field.
    #[default]
    Deepseek,
}

impl ReasoningFormat {
    pub fn parse(s: &str) -> anyhow::Result<ReasoningFormat> {
        match s {
            "none" => Ok(ReasoningFormat::None),
            // llama-server's `auto` reads DeepSeek's tags too.
            "deepseek" | "auto" => Ok(ReasoningFormat::Deepseek),
            other => anyhow::bail!("--reasoning-format {other}: expected none, deepseek or auto"),
        }
    }
}

/// How a reply may think: after a `<think>` it writes itself, or from its
/// first byte when the prompt ends inside one (DeepSeek R1's templates end
/// the generation prompt with `<think>\n`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thinking {
    pub open_in_prompt: bool,
}

/// A reply's format (`response_format`, a grammar, Ollama's `format`, a
/// whole-reply tool call) under a prompt that ends inside `<think>` (DeepSeek
/// R1's Llama distills) binds only what follows `</think>`: the reasoning
/// stays free, and the answer is what the format asks for.
pub fn after_thinking(f: OutputFormat, thinking: Option<Thinking>) -> OutputFormat {
    match f {
        OutputFormat::JsonObject | OutputFormat::JsonSchema(_) | OutputFormat::Grammar(_)
            if thinking.is_some_and(|t| t.open_in_prompt) =>
        {
            OutputFormat::Triggered(Arc::new(Trigger::once(THINK_CLOSE, f)))
        }
        f => f,
    }
}

impl Thinking {
    /// For a rendered prompt, `None` when replies are returned as written.
    pub fn for_prompt(format: ReasoningFormat, prompt: &str) -> Option<Thinking> {
        (format == ReasoningFormat::Deepseek).then(|| Thinking {
            open_in_prompt: prompt.trim_end().ends_with(THINK_OPEN),
        })
    }

    /// (reasoning, answer) of the reply so far, each as far as it is
    /// surely one or the other: a tail that may be the start of `</think>`
    /// (or a reply that may still open with `<think>`) is held back.
    fn parts<'t>(&self, text: &'t str, finished: bool) -> (Option<Cow<'t, str>>, &'t str) {
        let body = if self.open_in_prompt {
            text
        } else {
            let t = text.trim_start();
            match t.strip_prefix(THINK_OPEN) {
                Some(rest) => rest,
                None if !finished && THINK_OPEN.starts_with(t) => return (None, ""),
                None => return (None, text),
            }
        };
        match body.find(THINK_CLOSE) {
            Some(i) => (
                Some(body[..i].trim().into()),
                body[i + THINK_CLOSE.len()..].trim_start(),
            ),
            None => {
                let held = if finished {
                    body.len()
                } else {
                    body.rfind('<')
                        .filter(|&i| THINK_CLOSE.starts_with(&body[i..]))
                        .unwrap_or(body.len())
                };
                (Some(body[..held].trim_start().into()), "")
            }
        }
    }
}

/// A whole reply read.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadReply {
    pub reasoning: Option<String>,
    pub reply: Reply,
}

/// Text to send now, by kind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Delta {
    pub reasoning: String,
    pub content: String,
}

/// Reads a chat reply, whole or as it streams.
pub struct ReplyReader {
    thinking: Option<Thinking>,
    tools: Option<ReplyStream>,
    plain_tools: Option<ToolUse>,
    text: String,
    shown_reasoning: String,
    /// The answer's text so far (given to the tool reader piece by piece).
    answer: String,
}

impl ReplyReader {
    /// `None` when there is nothing to read: the reply is the answer.
    pub fn new(thinking: Option<Thinking>, tools: Option<ToolUse>) -> Option<ReplyReader> {
        if thinking.is_none() && tools.is_none() {
            return None;
        }
        Some(ReplyReader {
            thinking,
            tools: tools.clone().map(ReplyStream::new),
            plain_tools: tools,
            text: String::new(),
            shown_reasoning: String::new(),
            answer: String::new(),
        })
    }

    /// A finished reply, read at once.
    pub fn read(&self, text: &str) -> ReadReply {
        let (reasoning, answer) = match self.thinking {
            Some(t) => {
                let (r, a) = t.parts(text, true);
                (r.map(|r| r.trim_end().to_string()), a)
            }
            None => (None, text),
        };
        let reply = match &self.plain_tools {
            Some(t) => t.reply(answer),
            None => Reply {
                content: Some(answer.to_string()),
                calls: Vec::new(),
            },
        };
        ReadReply { reasoning, reply }
    }

    /// Adds a streamed piece; returns what to send now.
    pub fn push(&mut self, piece: &str) -> Delta {
        self.text.push_str(piece);
        let mut d = Delta::default();
        let new_answer = match self.thinking {
            // Known not to think: the piece is answer, no rescan of the reply.
            None => piece.to_string(),
            Some(t) => {
                let (reasoning, answer) = t.parts(&self.text, false);
                if let Some(new) = reasoning
                    .as_deref()
                    .and_then(|r| r.strip_prefix(self.shown_reasoning.as_str()))
                {
                    d.reasoning = new.to_string();
                }
                let new = answer
                    .strip_prefix(self.answer.as_str())
                    .unwrap_or_default()
                    .to_string();
                // A reply that has begun with something else than `<think>` never thinks.
                if reasoning.is_none() && !answer.is_empty() && !t.open_in_prompt {
                    self.thinking = None;
                }
                new
            }
        };
        self.shown_reasoning.push_str(&d.reasoning);
        self.answer.push_str(&new_answer);
        d.content = match self.tools.as_mut() {
            Some(t) => t.push(&new_answer),
            None => new_answer,
        };
        d
    }

    /// The whole reply read, and what of it is still to send.
    pub fn finish(&mut self) -> (Delta, ReadReply) {
        let read = self.read(&self.text);
        let reasoning = read
            .reasoning
            .as_deref()
            .and_then(|r| r.strip_prefix(self.shown_reasoning.as_str()))
            .unwrap_or_default()
            .to_string();
        let content = match self.tools.as_mut() {
            Some(t) => {
                // What was held back as a possible `<think>` or `</think>` is answer after all.
                let answer = match self.thinking {
                    Some(th) => th.parts(&self.text, true).1,
                    None => self.text.as_str(),
                };
                let tail = answer
                    .strip_prefix(self.answer.as_str())
                    .unwrap_or_default();
                t.push(tail) + &t.finish().0
            }
            None => read
                .reply
                .content
                .as_deref()
                .and_then(|c| c.strip_prefix(self.answer.as_str()))
                .unwrap_or_default()
                .to_string(),
        };
        (Delta { reasoning, content }, read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(open: bool) -> ReplyReader {
        ReplyReader::new(
            Some(Thinking {
                open_in_prompt: open,
            }),
            None,
        )
        .unwrap()
    }

    fn stream(r: &mut ReplyReader, pieces: &[&str]) -> (String, String, ReadReply) {
        let (mut reasoning, mut content) = (String::new(), String::new());
        for p in pieces {
            let d = r.push(p);
            reasoning += &d.reasoning;
            content += &d.content;
        }
        let (d, read) = r.finish();
        (reasoning + &d.reasoning, content + &d.content, read)
    }

    #[test]
    fn reasoning_is_split_off_whole_and_streamed() {
        assert_eq!(
            Thinking::for_prompt(ReasoningFormat::Deepseek, "<｜Assistant｜><think>\n"),
            Some(Thinking {
                open_in_prompt: true
            })
        );
        assert_eq!(
            Thinking::for_prompt(ReasoningFormat::None, "<think>\n"),
            None
        );
        let r = reader(true);
        let read = r.read("Let me think.\n</think>\n\nParis.");
        assert_eq!(read.reasoning.as_deref(), Some("Let me think."));
        assert_eq!(read.reply.content.as_deref(), Some("Paris."));
        let read = reader(false).read("<think>\nHm.</think>Yes.");
        assert_eq!(
            (read.reasoning.as_deref(), read.reply.content.as_deref()),
            (Some("Hm."), Some("Yes."))
        );
        let read = reader(false).read("No tags here.");
        assert_eq!(
            (read.reasoning, read.reply.content.as_deref()),
            (None, Some("No tags here."))
        );
        // Cut short while thinking: all reasoning, no answer yet.
        let read = reader(true).read("Still going");
        assert_eq!(
            (read.reasoning.as_deref(), read.reply.content.as_deref()),
            (Some("Still going"), Some(""))
        );

        let mut r = reader(true);
        let d = r.push("Let me </th");
        assert_eq!(
            d,
            Delta {
                reasoning: "Let me ".into(),
                content: "".into()
            }
        );
        let (reasoning, content, read) = stream(&mut r, &["ink>\n\nPar", "is."]);
        assert_eq!(reasoning, "");
        assert_eq!(content, "Paris.");
        assert_eq!(read.reasoning.as_deref(), Some("Let me"));
        let mut r = reader(false);
        let (reasoning, content, _) = stream(&mut r, &["<th", "ink>a < b", "</think> ok"]);
        assert_eq!((reasoning.as_str(), content.as_str()), ("a < b", "ok"));
        let mut r = reader(false);
        let (reasoning, content, _) = stream(&mut r, &["<t", "able>"]);
        assert_eq!((reasoning.as_str(), content.as_str()), ("", "<table>"));
    }
}
