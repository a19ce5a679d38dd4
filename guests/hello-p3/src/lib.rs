//! A WASI 0.3 command: `run` is an async export. It prints its arguments on one
//! line through a `stream<u8>` to stdout, waits on the async monotonic clock when
//! `HELLO_WAIT_MS=<n>` asks it to, and fails `run` (exit status 1) when
//! `HELLO_FAIL` is set.

wasip3::cli::command::export!(Hello);

struct Hello;

impl wasip3::exports::cli::run::Guest for Hello {
    async fn run() -> Result<(), ()> {
        let args: Vec<String> = wasip3::cli::environment::get_arguments().into_iter().skip(1).collect();
        let env = wasip3::cli::environment::get_environment();
        let var = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        if let Some(ms) = var("HELLO_WAIT_MS").and_then(|ms| ms.parse::<u64>().ok()) {
            wasip3::clocks::monotonic_clock::wait_for(ms * 1_000_000).await;
        }
        print(format!("{} (WASI 0.3)\n", args.join(" "))).await;
        if var("HELLO_FAIL").is_some() { Err(()) } else { Ok(()) }
    }
}

/// Writes `text` to stdout: the stream's writer and the host's reader of it run
/// at once, as a WASI 0.3 stream needs both ends.
async fn print(text: String) {
    let (mut tx, rx) = wasip3::wit_stream::new();
    let written = async { wasip3::cli::stdout::write_via_stream(rx).await };
    let write = async move {
        let rest = tx.write_all(text.into_bytes()).await;
        debug_assert!(rest.is_empty());
    };
    let (outcome, ()) = futures_util::future::join(written, write).await;
    outcome.expect("stdout accepts the text");
}
