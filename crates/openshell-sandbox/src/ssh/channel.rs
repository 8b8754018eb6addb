//! One ssh session channel: its requests (pty, env) until the one that
//! starts something (exec, shell, subsystem), then that program's streams
//! until it exits, then its exit status.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use russh::server::{Handle, Msg};
use russh::{Channel, ChannelId, ChannelMsg};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::Server;
use crate::exec::Helper;
use crate::main_process::{Attachment, MainProcess};
use crate::pty;

/// Ctrl-P Ctrl-Q: detach from the main process (on a terminal).
const DETACH: &[u8] = b"\x10\x11";
/// How long output may still arrive after the program exited (a pty
/// stays open while a background child holds it).
const DRAIN: Duration = Duration::from_millis(500);

/// What the client asked the channel to run.
#[derive(Debug)]
enum Start {
    Command(String),
    Shell,
    /// OpenSSH's sftp server, at this path.
    Sftp(&'static str),
    Main,
}

/// A terminal the client asked for.
#[derive(Debug, Clone)]
struct Terminal {
    term: String,
    cols: u16,
    rows: u16,
}

fn dims(cols: u32, rows: u32) -> (u16, u16) {
    (
        u16::try_from(cols).unwrap_or(u16::MAX),
        u16::try_from(rows).unwrap_or(u16::MAX),
    )
}

async fn answer(handle: &Handle, id: ChannelId, want_reply: bool, ok: bool) {
    if want_reply {
        let _ = if ok {
            handle.channel_success(id).await
        } else {
            handle.channel_failure(id).await
        };
    }
}

/// Serves the channel until its program ends or the client closes it.
pub(super) async fn serve(server: Arc<Server>, mut channel: Channel<Msg>, handle: Handle) {
    let id = channel.id();
    let mut env: Vec<(String, String)> = Vec::new();
    let mut terminal: Option<Terminal> = None;
    let start = loop {
        let Some(message) = channel.wait().await else {
            return;
        };
        match message {
            ChannelMsg::RequestPty {
                want_reply,
                term,
                col_width,
                row_height,
                ..
            } => {
                let (cols, rows) = dims(col_width, row_height);
                terminal = Some(Terminal { term, cols, rows });
                answer(&handle, id, want_reply, true).await;
            }
            ChannelMsg::SetEnv {
                want_reply,
                variable_name,
                variable_value,
            } => {
                let valid = !variable_name.is_empty()
                    && !variable_name.contains(['=', '\0'])
                    && !variable_value.contains('\0');
                if valid {
                    env.retain(|(k, _)| *k != variable_name);
                    env.push((variable_name, variable_value));
                }
                answer(&handle, id, want_reply, valid).await;
            }
            ChannelMsg::Exec {
                want_reply,
                command,
            } => {
                answer(&handle, id, want_reply, true).await;
                break Start::Command(String::from_utf8_lossy(&command).into_owned());
            }
            ChannelMsg::RequestShell { want_reply } => {
                answer(&handle, id, want_reply, true).await;
                break Start::Shell;
            }
            ChannelMsg::RequestSubsystem { want_reply, name } => {
                let start = match (name.as_str(), Server::sftp_server()) {
                    ("sftp", Some(path)) => Start::Sftp(path),
                    ("openshell-main", _) => Start::Main,
                    _ => {
                        answer(&handle, id, want_reply, false).await;
                        continue;
                    }
                };
                answer(&handle, id, want_reply, true).await;
                break start;
            }
            ChannelMsg::Eof | ChannelMsg::Close => return,
            _ => {}
        }
    };
    let code = match (start, server.main.clone()) {
        (Start::Main, Some(main)) => attach(&main, &mut channel, terminal.as_ref()).await,
        (start, _) => {
            let argv = match start {
                Start::Command(command) => vec![shell(), "-c".to_owned(), command],
                Start::Shell | Start::Main => vec![shell(), "-l".to_owned()],
                Start::Sftp(path) => vec![path.to_owned()],
            };
            run(&server, argv, env, terminal, &mut channel).await
        }
    };
    let _ = channel.exit_status(code).await;
    let _ = channel.eof().await;
    let _ = channel.close().await;
}

/// The user's shell: bash where the host has it.
fn shell() -> String {
    if std::path::Path::new("/bin/bash").is_file() {
        "/bin/bash".to_owned()
    } else {
        "/bin/sh".to_owned()
    }
}

/// Sends a message to the client's stderr.
async fn tell(channel: &Channel<Msg>, message: &str) {
    let _ = channel
        .extended_data_bytes(1, format!("openshell: {message}\r\n").into_bytes())
        .await;
}

/// Runs `argv` in the sandbox for the channel; returns its exit status.
async fn run(
    server: &Server,
    argv: Vec<String>,
    mut env: Vec<(String, String)>,
    terminal: Option<Terminal>,
    channel: &mut Channel<Msg>,
) -> u32 {
    if let Some(terminal) = &terminal {
        env.retain(|(k, _)| k != "TERM");
        env.push(("TERM".to_owned(), terminal.term.clone()));
    }
    let plan = match server.spawner.plan(argv, &env, "") {
        Ok(plan) => plan,
        Err(error) => {
            tell(channel, &format!("{error:#}")).await;
            return crate::EXIT_LAUNCH_FAILED as u32;
        }
    };
    let started = match &terminal {
        Some(t) => start_on_pty(server, &plan, t, channel),
        None => start_on_pipes(server, &plan, channel),
    };
    let code = match started {
        Ok((mut helper, input, outputs)) => relay(&mut helper, channel, input, outputs).await,
        Err(error) => {
            tell(channel, &format!("{error:#}")).await;
            crate::EXIT_LAUNCH_FAILED
        }
    };
    u32::try_from(code).unwrap_or(crate::EXIT_LAUNCH_FAILED as u32)
}

/// Where the client's input goes.
enum Input {
    /// The command's stdin, through a task (so that a command that does
    /// not read it does not stop the channel from noticing it exited);
    /// `None` after the client's end of input.
    Pipe(Option<mpsc::Sender<Vec<u8>>>),
    /// The terminal, which also takes the window size.
    Pty(Arc<pty::Master>),
}

/// The tasks copying the command's output to the channel.
type Outputs = Vec<tokio::task::JoinHandle<()>>;

fn start_on_pipes(
    server: &Server,
    plan: &crate::isolation::Plan,
    channel: &Channel<Msg>,
) -> anyhow::Result<(Helper, Input, Outputs)> {
    let mut helper = server
        .spawner
        .spawn(plan, [Stdio::piped(), Stdio::piped(), Stdio::piped()])?;
    let mut outputs = Vec::new();
    if let Some(out) = helper.child.stdout.take() {
        outputs.push(tokio::spawn(copy_out(out, channel.make_writer())));
    }
    if let Some(err) = helper.child.stderr.take() {
        outputs.push(tokio::spawn(copy_out(
            err,
            channel.make_writer_ext(Some(1)),
        )));
    }
    let (input, mut inputs) = mpsc::channel::<Vec<u8>>(16);
    if let Some(mut stdin) = helper.child.stdin.take() {
        tokio::spawn(async move {
            while let Some(data) = inputs.recv().await {
                if stdin.write_all(&data).await.is_err() {
                    break;
                }
            }
        });
    }
    Ok((helper, Input::Pipe(Some(input)), outputs))
}

fn start_on_pty(
    server: &Server,
    plan: &crate::isolation::Plan,
    terminal: &Terminal,
    channel: &Channel<Msg>,
) -> anyhow::Result<(Helper, Input, Outputs)> {
    let (master, slave) = pty::open(terminal.cols, terminal.rows)?;
    let stdio = [
        Stdio::from(slave.try_clone()?),
        Stdio::from(slave.try_clone()?),
        Stdio::from(slave),
    ];
    let helper = server.spawner.spawn(plan, stdio)?;
    let master = Arc::new(master);
    let output = {
        let master = master.clone();
        let mut writer = channel.make_writer();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            while let Ok(n @ 1..) = master.read(&mut buf).await {
                if writer.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            let _ = writer.flush().await;
        })
    };
    Ok((helper, Input::Pty(master), vec![output]))
}

/// The helper's exit code, or the launch failure code.
async fn exited(helper: &mut Helper) -> i32 {
    helper
        .child
        .wait()
        .await
        .map(crate::isolation::launch::exit_code)
        .unwrap_or(crate::EXIT_LAUNCH_FAILED)
}

/// Copies `from` to `to` until it ends.
async fn copy_out(mut from: impl tokio::io::AsyncRead + Unpin, mut to: impl AsyncWrite + Unpin) {
    let _ = tokio::io::copy(&mut from, &mut to).await;
    let _ = to.flush().await;
}

/// Feeds the client's input to the command until it exits (its code) or
/// the client goes (255, the command stopped); then lets its output
/// finish: to the end on pipes, for [`DRAIN`] on a terminal (which a
/// background child may hold open).
async fn relay(
    helper: &mut Helper,
    channel: &mut Channel<Msg>,
    mut input: Input,
    outputs: Outputs,
) -> i32 {
    let code = loop {
        tokio::select! {
            code = exited(helper) => break code,
            message = channel.wait() => match (message, &mut input) {
                (Some(ChannelMsg::Data { data }), Input::Pipe(Some(stdin))) => {
                    let _ = stdin.send(data.to_vec()).await;
                }
                (Some(ChannelMsg::Data { data }), Input::Pty(master)) => {
                    let _ = master.write_all(&data).await;
                }
                (Some(ChannelMsg::Eof), Input::Pipe(stdin)) => *stdin = None,
                (Some(ChannelMsg::WindowChange { col_width, row_height, .. }), Input::Pty(master)) => {
                    let (cols, rows) = dims(col_width, row_height);
                    let _ = master.resize(cols, rows);
                }
                (None | Some(ChannelMsg::Close), _) => {
                    let _ = helper.stop().await;
                    return 255;
                }
                _ => {}
            },
        }
    };
    let finished = join_outputs(outputs);
    match input {
        Input::Pipe(_) => finished.await,
        Input::Pty(_) => {
            let _ = tokio::time::timeout(DRAIN, finished).await;
        }
    }
    code
}

/// Waits for every output task.
async fn join_outputs(outputs: Outputs) {
    for output in outputs {
        let _ = output.await;
    }
}

/// Attaches the channel to the main process: replay, then live output;
/// input while this attachment owns stdin. Ends when the main process
/// exits (its code) or the client detaches or goes (0). A main process on
/// a pseudo-terminal gets the bytes as typed and the owner's window size;
/// one on pipes gets a line discipline done here ([`cooked`]).
async fn attach(
    main: &Arc<MainProcess>,
    channel: &mut Channel<Msg>,
    terminal: Option<&Terminal>,
) -> u32 {
    let on_terminal = terminal.is_some();
    let mut attachment = main.attach();
    let id = attachment.id;
    let owns_stdin = main.claim_stdin(id);
    if let (true, Some(terminal)) = (owns_stdin, terminal) {
        main.resize(terminal.cols, terminal.rows);
    }
    if attachment.dropped > 0 {
        let dropped = attachment.dropped;
        tell(
            channel,
            &format!("the first {dropped} bytes of output are no longer retained"),
        )
        .await;
    }
    if !owns_stdin {
        tell(
            channel,
            "another attachment owns the main process's input; this one only watches",
        )
        .await;
    }
    let mut writer = Output {
        to: channel.make_writer(),
        on_terminal: on_terminal && !main.on_terminal(),
    };
    let replay = std::mem::take(&mut attachment.replay);
    let code = if writer.write_all(&replay).await.is_ok() {
        follow(main, &mut attachment, channel, on_terminal, &mut writer).await
    } else {
        None
    };
    // Dropping the attachment gives stdin up.
    drop(attachment);
    let _ = writer.to.flush().await;
    code.map_or(0, |c| u32::try_from(c).unwrap_or(255))
}

/// Output towards an attachment. The main process writes to a pipe, not a
/// terminal; a client on a terminal is in raw mode, so the terminal's own
/// line discipline is done here: newlines become CR LF.
struct Output<W> {
    to: W,
    on_terminal: bool,
}

impl<W: AsyncWrite + Unpin> Output<W> {
    async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        if !self.on_terminal {
            return self.to.write_all(data).await;
        }
        let mut converted = Vec::with_capacity(data.len() + data.len() / 16);
        for &byte in data {
            if byte == b'\n' {
                converted.push(b'\r');
            }
            converted.push(byte);
        }
        self.to.write_all(&converted).await
    }
}

/// Input from a client on a terminal, for a main process reading a pipe:
/// Enter (CR) becomes a newline, and what was typed is echoed back.
fn cooked(data: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let input = data
        .iter()
        .map(|&b| if b == b'\r' { b'\n' } else { b })
        .collect();
    let mut echo = Vec::with_capacity(data.len());
    for &byte in data {
        match byte {
            b'\r' | b'\n' => echo.extend_from_slice(b"\r\n"),
            0x7f | 0x08 => echo.extend_from_slice(b"\x08 \x08"),
            b if b >= 0x20 || b == b'\t' => echo.push(b),
            _ => {}
        }
    }
    (input, echo)
}

/// The attachment's live part; the main process's exit code when it ended.
async fn follow(
    main: &Arc<MainProcess>,
    attachment: &mut Attachment,
    channel: &mut Channel<Msg>,
    on_terminal: bool,
    output: &mut Output<impl AsyncWrite + Unpin>,
) -> Option<i32> {
    use tokio::sync::broadcast::error::RecvError;
    let id = attachment.id;
    loop {
        tokio::select! {
            chunk = attachment.live.recv() => match chunk {
                Ok(chunk) => {
                    if output.write_all(&chunk).await.is_err() {
                        return None;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tell(channel, &format!("output skipped: this attachment fell {n} chunks behind")).await;
                }
                Err(RecvError::Closed) => return None,
            },
            () = exit(&mut attachment.exit) => break,
            message = channel.wait() => match message {
                Some(ChannelMsg::Data { data }) => {
                    if on_terminal && data.windows(DETACH.len()).any(|w| w == DETACH) {
                        tell(channel, "detached").await;
                        return None;
                    }
                    let data = if on_terminal && !main.on_terminal() {
                        let (input, echo) = cooked(&data);
                        if main.owns_stdin(id) && output.to.write_all(&echo).await.is_err() {
                            return None;
                        }
                        input
                    } else {
                        data.to_vec()
                    };
                    // A blocking pipe write, off the runtime's threads: a
                    // main process that does not read slows this client
                    // down and nothing else.
                    let main = main.clone();
                    let _ = tokio::task::spawn_blocking(move || main.write_stdin(id, &data)).await;
                }
                Some(ChannelMsg::Eof) => main.release_stdin(id),
                Some(ChannelMsg::WindowChange { col_width, row_height, .. }) => {
                    if main.owns_stdin(id) {
                        let (cols, rows) = dims(col_width, row_height);
                        main.resize(cols, rows);
                    }
                }
                None | Some(ChannelMsg::Close) => return None,
                Some(_) => {}
            },
        }
    }
    // The rest of the output, until the pipe ends (or a background child
    // keeps it open).
    let _ = tokio::time::timeout(DRAIN, attachment.ended.wait_for(|e| *e)).await;
    while let Ok(chunk) = attachment.live.try_recv() {
        if output.write_all(&chunk).await.is_err() {
            break;
        }
    }
    *attachment.exit.borrow()
}

/// Resolves once the main process has exited.
async fn exit(exit: &mut tokio::sync::watch::Receiver<Option<i32>>) {
    if exit.wait_for(Option::is_some).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_input_for_a_piped_main_process_is_cooked_and_echoed() {
        let (input, echo) = cooked(b"ls\x7f\x1b\r");
        assert_eq!(input, b"ls\x7f\x1b\n");
        assert_eq!(echo, b"ls\x08 \x08\r\n");
    }

    #[tokio::test]
    async fn terminal_output_gets_carriage_returns_and_piped_output_does_not() {
        for (on_terminal, expected) in [(true, &b"a\r\nb\r\n"[..]), (false, &b"a\nb\n"[..])] {
            let mut output = Output {
                to: Vec::new(),
                on_terminal,
            };
            output.write_all(b"a\nb\n").await.unwrap();
            assert_eq!(output.to, expected);
        }
    }
}
