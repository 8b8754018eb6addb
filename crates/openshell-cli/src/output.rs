//! Everything the CLI prints goes through here (the one module allowed to
//! print), so markers, colour and JSON stay consistent: success lines start
//! with `✓`, warnings with `!`, failures with `✗`; colour only on a terminal
//! and never with `NO_COLOR`; JSON output writes nothing else to stdout.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::IsTerminal;

/// Writes one line on stdout. A reader that went away (`| head`) ends the
/// command quietly with 141, as SIGPIPE ends other tools; SIGPIPE itself
/// stays ignored, because a socket written with `writev` would raise it too.
fn out(text: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = writeln!(stdout, "{text}")
        && error.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(141);
    }
}

fn colour(stream_is_tty: bool, code: &str, text: &str) -> String {
    if stream_is_tty && std::env::var_os("NO_COLOR").is_none() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// `✓ message` on stdout.
pub fn success(message: &str) {
    out(format_args!(
        "{} {message}",
        colour(std::io::stdout().is_terminal(), "32", "✓")
    ));
}

/// `✓ message` on stderr (progress of a command whose stdout is data).
pub fn success_stderr(message: &str) {
    eprintln!(
        "{} {message}",
        colour(std::io::stderr().is_terminal(), "32", "✓")
    );
}

/// A plain line on stderr (what a command is about to do).
pub fn stderr_line(text: &str) {
    eprintln!("{text}");
}

/// `→ message` on stderr: a choice made for the user.
pub fn arrow(message: &str) {
    eprintln!("→ {message}");
}

/// `· message` on stderr: nothing to do.
pub fn note(message: &str) {
    eprintln!("· {message}");
}

/// `! message` on stderr.
pub fn warning(message: &str) {
    eprintln!(
        "{} {message}",
        colour(std::io::stderr().is_terminal(), "33", "!")
    );
}

/// `✗ message` on stderr.
pub fn failure(message: &str) {
    eprintln!(
        "{} {message}",
        colour(std::io::stderr().is_terminal(), "31", "✗")
    );
}

/// A plain line on stdout.
pub fn line(text: &str) {
    out(format_args!("{text}"));
}

/// Bytes as they are on stdout (a followed log), flushed; a reader that
/// went away ends the command as [`out`] does.
pub fn raw(bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(141),
        other => other,
    }
}

/// A hint line on stderr, after a failure.
pub fn hint(text: &str) {
    eprintln!("  hint: {text}");
}

/// One JSON document, pretty-printed, on stdout.
pub fn json(value: &serde_json::Value) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => out(format_args!("{text}")),
        Err(e) => failure(&format!("cannot encode JSON output: {e}")),
    }
}

/// A progress line on stderr (`  [1.2s] Sandbox ready`).
pub fn step(text: &str) {
    eprintln!("  {text}");
}

/// Columns separated by two spaces, each as wide as its widest cell.
/// A listing's row (or header) with a leading WORKSPACE column when it
/// covers every workspace (`--all-workspaces`).
pub fn with_workspace<T>(all_workspaces: bool, workspace: T, mut row: Vec<T>) -> Vec<T> {
    if all_workspaces {
        row.insert(0, workspace);
    }
    row
}

pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let render = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        text.trim_end().to_owned()
    };
    out(format_args!("{}", render(headers.to_vec())));
    for row in rows {
        out(format_args!(
            "{}",
            render(row.iter().map(String::as_str).collect())
        ));
    }
}

/// Asks `question` on stderr and reads the answer (trimmed) from stdin.
pub fn ask(question: &str) -> std::io::Result<String> {
    stderr_line(question);
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(answer.trim().to_owned())
}
