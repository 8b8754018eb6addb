//! Drawing the dashboard: sandboxes (phase, age) on the left, the
//! selected one's egress decisions on the right, its policy revision and
//! gateway events below, the keys at the bottom, dialogs on top.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, TableState, Wrap};

use super::app::{App, Dialog, Focus};

/// The colours of a theme.
#[derive(Debug, Clone, Copy)]
pub struct Palette {
    pub text: Color,
    pub dim: Color,
    pub accent: Color,
    pub good: Color,
    pub bad: Color,
    pub warn: Color,
    pub selected: Color,
}

/// `--theme`: `dark`, `light`, or `auto` (from `COLORFGBG` when the
/// terminal sets it, else dark).
pub fn palette(theme: &str) -> Palette {
    let light = match theme {
        "light" => true,
        "dark" => false,
        _ => std::env::var("COLORFGBG")
            .ok()
            .and_then(|v| v.rsplit(';').next().and_then(|bg| bg.parse::<u8>().ok()))
            .is_some_and(|bg| bg == 7 || bg >= 9),
    };
    if light {
        Palette {
            text: Color::Black,
            dim: Color::DarkGray,
            accent: Color::Blue,
            good: Color::Green,
            bad: Color::Red,
            warn: Color::Magenta,
            selected: Color::Rgb(210, 225, 250),
        }
    } else {
        Palette {
            text: Color::White,
            dim: Color::Gray,
            accent: Color::Cyan,
            good: Color::LightGreen,
            bad: Color::LightRed,
            warn: Color::Yellow,
            selected: Color::Rgb(40, 60, 90),
        }
    }
}

fn age(created_at_ms: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let secs = (now - created_at_ms).max(0) / 1000;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

fn titled<'a>(title: &'a str, focused: bool, colours: &Palette) -> Block<'a> {
    let style = if focused {
        Style::new().fg(colours.accent).add_modifier(Modifier::BOLD)
    } else {
        Style::new().fg(colours.dim)
    };
    Block::new()
        .borders(Borders::ALL)
        .border_style(style)
        .title(Span::styled(title, style))
}

pub fn draw(frame: &mut Frame<'_>, app: &App, colours: &Palette) {
    let [header, body, lower, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(8),
        Constraint::Length(9),
        Constraint::Length(2),
    ])
    .areas(frame.area());
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(
                " OpenShell ",
                Style::new().fg(colours.accent).add_modifier(Modifier::BOLD),
            ),
            Span::styled(
                format!("gateway {} · workspace {}", app.gateway, app.workspace),
                Style::new().fg(colours.text),
            ),
        ])),
        header,
    );
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(35), Constraint::Percentage(65)]).areas(body);
    sandboxes(frame, app, colours, left);
    egress(frame, app, colours, right);
    below(frame, app, colours, lower);
    let help = "↑↓ select  Tab panel  c connect  e shell  s stop/start  d delete  a allow the denial  q quit";
    frame.render_widget(
        Paragraph::new(vec![
            Line::styled(app.status.clone(), Style::new().fg(colours.warn)),
            Line::styled(help, Style::new().fg(colours.dim)),
        ]),
        keys,
    );
    if let Some(dialog) = &app.dialog {
        self::dialog(frame, dialog, colours);
    }
}

fn sandboxes(frame: &mut Frame<'_>, app: &App, colours: &Palette, area: Rect) {
    let rows: Vec<Row<'_>> = app
        .sandboxes
        .iter()
        .map(|s| {
            let phase = match s.phase.as_str() {
                "Ready" => colours.good,
                "Error" => colours.bad,
                _ => colours.warn,
            };
            Row::new(vec![
                Cell::from(s.name.clone()),
                Cell::from(Span::styled(s.phase.clone(), Style::new().fg(phase))),
                Cell::from(age(s.created_at_ms)),
            ])
        })
        .collect();
    let empty = app.sandboxes.is_empty();
    let table = Table::new(
        rows,
        [
            Constraint::Min(12),
            Constraint::Length(12),
            Constraint::Length(5),
        ],
    )
    .header(Row::new(["NAME", "PHASE", "AGE"]).style(Style::new().fg(colours.dim)))
    .row_highlight_style(
        Style::new()
            .bg(colours.selected)
            .add_modifier(Modifier::BOLD),
    )
    .highlight_symbol("> ")
    .block(titled("Sandboxes", app.focus == Focus::Sandboxes, colours));
    let mut state = TableState::default().with_selected((!empty).then_some(app.selected));
    frame.render_stateful_widget(table, area, &mut state);
    if empty {
        let inner = area.inner(ratatui::layout::Margin::new(2, 2));
        frame.render_widget(
            Paragraph::new("No sandboxes found.").style(Style::new().fg(colours.dim)),
            inner,
        );
    }
}

fn egress(frame: &mut Frame<'_>, app: &App, colours: &Palette, area: Rect) {
    let title = match app.current_name() {
        Some(name) => format!("Egress · {name}"),
        None => "Egress".to_owned(),
    };
    let rows: Vec<Row<'_>> = app
        .decisions
        .iter()
        .map(|d| {
            let verdict = match d.verdict.as_str() {
                "deny" => colours.bad,
                "audit" => colours.warn,
                _ => colours.good,
            };
            Row::new(vec![
                Cell::from(d.time.clone()),
                Cell::from(Span::styled(d.verdict.clone(), Style::new().fg(verdict))),
                Cell::from(d.binary.clone()),
                Cell::from(format!("{}:{} {}", d.host, d.port, d.request)),
                Cell::from(d.reason.clone()),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(8),
            Constraint::Length(5),
            Constraint::Percentage(22),
            Constraint::Percentage(40),
            Constraint::Fill(1),
        ],
    )
    .header(
        Row::new(["TIME", "", "BINARY", "DESTINATION", "REASON"])
            .style(Style::new().fg(colours.dim)),
    )
    .row_highlight_style(Style::new().bg(colours.selected))
    .block(titled(&title, app.focus == Focus::Egress, colours));
    let mut state = TableState::default();
    if app.focus == Focus::Egress && !app.decisions.is_empty() {
        state.select(Some(app.decision_selected));
    } else if !app.decisions.is_empty() {
        // Follow the newest.
        *state.offset_mut() = app
            .decisions
            .len()
            .saturating_sub(area.height.saturating_sub(3) as usize);
    }
    frame.render_stateful_widget(table, area, &mut state);
}

fn below(frame: &mut Frame<'_>, app: &App, colours: &Palette, area: Rect) {
    let policy = match &app.policy {
        Some(p) => {
            let colour = match p.status.as_str() {
                "loaded" => colours.good,
                "failed" => colours.bad,
                _ => colours.warn,
            };
            let mut spans = vec![
                Span::raw(format!("Policy version {} ", p.version)),
                Span::styled(p.status.clone(), Style::new().fg(colour)),
                Span::raw(format!(" (hash {}", p.hash.get(..12).unwrap_or(&p.hash))),
                Span::raw(format!(", active {})", p.active_version)),
            ];
            if !p.error.is_empty() {
                spans.push(Span::styled(
                    format!(" {}", p.error),
                    Style::new().fg(colours.bad),
                ));
            }
            Line::from(spans)
        }
        None => Line::styled("Policy: the built-in default", Style::new().fg(colours.dim)),
    };
    let mut lines = vec![policy];
    let room = area.height.saturating_sub(3) as usize;
    lines.extend(
        app.events
            .iter()
            .skip(app.events.len().saturating_sub(room))
            .map(|e| Line::styled(e.clone(), Style::new().fg(colours.text))),
    );
    frame.render_widget(
        Paragraph::new(lines).block(titled("Policy and events", false, colours)),
        area,
    );
}

fn dialog(frame: &mut Frame<'_>, dialog: &Dialog, colours: &Palette) {
    let area = frame.area();
    let (title, lines, scroll) = match dialog {
        Dialog::ConfirmDelete(name) => (
            "Delete",
            vec![
                Line::raw(format!("Delete sandbox {name} and its workspace?")),
                Line::raw(""),
                Line::styled("y delete   n keep", Style::new().fg(colours.dim)),
            ],
            0,
        ),
        Dialog::Proposal {
            summary,
            diff,
            scroll,
            ..
        } => {
            let mut lines = vec![Line::raw(summary.clone()), Line::raw("")];
            lines.extend(diff.iter().skip(usize::from(*scroll)).map(|line| {
                let colour = match line.as_bytes().first() {
                    Some(b'+') => colours.good,
                    Some(b'-') => colours.bad,
                    _ => colours.dim,
                };
                Line::styled(line.clone(), Style::new().fg(colour))
            }));
            lines.push(Line::raw(""));
            lines.push(Line::styled(
                "y apply (policy update)   n cancel   ↑↓ scroll",
                Style::new().fg(colours.dim),
            ));
            ("Proposed policy update", lines, 0)
        }
    };
    let width = area.width.saturating_sub(8).min(100);
    let height = (lines.len() as u16 + 2).min(area.height.saturating_sub(4));
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .scroll((scroll, 0))
            .block(titled(title, true, colours)),
        popup,
    );
}
