//! `llama-wgpu chat` in a terminal (a pseudo-terminal, as a person uses it):
//! the prompt, streaming, Ctrl-C stopping a reply without leaving the chat,
//! history recall with the Up key, line editing, `/exit`.
#![cfg(unix)]

mod common;

use rexpect::process::WaitStatus;

#[test]
fn interactive_chat_stops_a_reply_on_ctrl_c_and_keeps_going() {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_llama-wgpu"));
    cmd.args(["chat", "-q", "--temp", "0", "-c", "512", "-n", "300", "-m"])
        .arg(common::test_model_path())
        .args(["--system", "You are a helpful assistant."]);
    // Generous: lavapipe decodes SmolLM2 at about one token per second.
    let mut p = rexpect::session::spawn_command(cmd, Some(300_000)).unwrap();
    p.exp_string("Ctrl-C stops a reply").unwrap();
    p.exp_string("> ").unwrap();
    let ask = "Write a very long poem about the sea.";
    p.send(&format!("{ask}\r")).unwrap();
    p.flush().unwrap();
    p.exp_string(ask).unwrap();
    // Streaming: three letters of the reply (escape sequences have at most
    // one). A line editor may redraw the line on Enter, so the letters could
    // also be the redraw; a short pause makes sure the editor has handed the
    // terminal back (Ctrl-C is a signal again) while the 300-token reply runs.
    p.exp_regex("[A-Za-z]{3}").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    p.send_control('c').unwrap();
    p.exp_string("(reply stopped)").unwrap();
    p.exp_string("> ").unwrap();
    // Up recalls the last message into the line editor; Ctrl-U clears it.
    p.send("\x1b[A").unwrap();
    p.flush().unwrap();
    p.exp_string(ask).unwrap();
    p.send_control('u').unwrap();
    // Line editing: "/exot", two backspaces, "it": the chat must see "/exit".
    p.send("/exot\x7f\x7fit\r").unwrap();
    p.flush().unwrap();
    p.exp_eof().unwrap();
    match p.process().wait().unwrap() {
        WaitStatus::Exited(_, 0) => {}
        other => panic!("chat did not exit cleanly: {other:?}"),
    }
}
