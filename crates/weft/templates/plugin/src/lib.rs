//! `weft {{name}} FILE...`: the lines of each file, read from the working
//! directory; `--connect HOST:PORT` tries a TCP connection. Its `after-build`
//! hook says which manifest was built.

wit_bindgen::generate!({ path: "wit", world: "weft:cli/cli-plugin" });

use exports::weft::cli::plugin::{Argument, ArgumentKind, Command, Guest, Hook, Metadata};

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Metadata {
        Metadata {
            name: "{{name}}".into(),
            about: "Counts the lines of files in the working directory".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            commands: vec![Command {
                name: "{{name}}".into(),
                about: "Count the lines of files".into(),
                arguments: vec![
                    Argument {
                        name: "connect".into(),
                        about: "Try a TCP connection to HOST:PORT instead".into(),
                        kind: ArgumentKind::Option,
                        required: false,
                    },
                    Argument {
                        name: "files".into(),
                        about: "Files, relative to the working directory".into(),
                        kind: ArgumentKind::Rest,
                        required: false,
                    },
                ],
            }],
            hooks: vec![Hook::AfterBuild],
            wants_working_dir: true,
            wants_network: true,
        }
    }

    fn run(_command: String, args: Vec<String>) -> u8 {
        let mut failed = false;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "--connect" {
                let Some(address) = args.next() else {
                    eprintln!("--connect needs HOST:PORT");
                    return 2;
                };
                match std::net::TcpStream::connect(address.as_str()) {
                    Ok(_) => println!("connected to {address}"),
                    Err(e) => {
                        eprintln!("cannot connect to {address}: {e}");
                        failed = true;
                    }
                }
                continue;
            }
            match std::fs::read_to_string(&arg) {
                Ok(text) => println!("{:>6} {arg}", text.lines().count()),
                Err(e) => {
                    eprintln!("cannot read {arg}: {e}");
                    failed = true;
                }
            }
        }
        u8::from(failed)
    }

    fn on_hook(hook: Hook, manifest: String) -> Result<(), String> {
        if let Hook::AfterBuild = hook {
            eprintln!("{{name}}: built {manifest}");
        }
        Ok(())
    }
}

export!(Plugin);
