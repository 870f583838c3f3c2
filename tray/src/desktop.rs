//! The desktop around the tray: notifications (org.freedesktop.Notifications on the session
//! bus), the clipboard (wl-copy, xclip or xsel) and asking for a name (zenity or kdialog).

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use zbus::Connection;
use zbus::Variant;

/// Shows a notification; failures are logged (a desktop without a notification server).
pub async fn notify(session: &Connection, summary: &str, body: &str) {
    let hints: HashMap<&str, Variant<'_>> = HashMap::new();
    let actions: Vec<&str> = Vec::new();
    let args = ("vmnet", 0u32, "computer", summary, body, actions, hints, -1i32);
    let reply = session
        .call_method(
            Some("org.freedesktop.Notifications"),
            "/org/freedesktop/Notifications",
            Some("org.freedesktop.Notifications"),
            "Notify",
            &args,
        )
        .await;
    if let Err(e) = reply {
        tracing::warn!("cannot show the notification {summary:?}: {e}");
    }
}

/// Whether `program` is on PATH.
fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| Path::new(&dir).join(program).is_file()))
}

/// Whether [`ask_name`] can ask.
pub fn can_prompt() -> bool {
    installed("zenity") || installed("kdialog")
}

/// Asks for a guest name in a dialog; None when cancelled or no dialog tool is installed.
pub async fn ask_name() -> Option<String> {
    let (program, args): (&str, &[&str]) = if installed("kdialog") {
        ("kdialog", &["--title", "Add a virtual machine", "--inputbox", "Name of the new virtual machine:"])
    } else {
        ("zenity", &["--entry", "--title=Add a virtual machine", "--text=Name of the new virtual machine:"])
    };
    let output = Command::new(program).args(args).stdin(Stdio::null()).output().await.ok()?;
    let name = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (output.status.success() && !name.is_empty()).then_some(name)
}

/// Puts `text` on the clipboard; Err names what is missing.
pub async fn copy(text: &str) -> Result<(), String> {
    let wayland = std::env::var_os("WAYLAND_DISPLAY").is_some();
    let tools: &[(&str, &[&str])] = if wayland {
        &[("wl-copy", &[])]
    } else {
        &[("xclip", &["-selection", "clipboard"]), ("xsel", &["--clipboard", "--input"])]
    };
    let Some((program, args)) = tools.iter().find(|(program, _)| installed(program)) else {
        let names: Vec<&str> = tools.iter().map(|(p, _)| *p).collect();
        return Err(format!("no clipboard tool: install {}", names.join(" or ")));
    };
    let mut child = Command::new(program)
        .args(*args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).await.map_err(|e| format!("{program}: {e}"))?;
    }
    // wl-copy and xclip stay to serve the selection: do not wait for them.
    Ok(())
}
