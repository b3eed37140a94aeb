use clap::Parser;
use node::cli::{Cli, LogFormat, ServeArgs, Verb};
use node::client::load_token;
use node::server::{self, ServeConfig};
use node::{commands, demo};
use tracing_subscriber::EnvFilter;

fn main() {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    let code = runtime.block_on(async {
        match cli.verb {
            Verb::Serve(args) => serve(args).await,
            Verb::Demo => {
                init_logs("warn", LogFormat::Text);
                demo::run().await
            }
            verb => match commands::run(verb).await {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("{e}");
                    e.exit_code()
                }
            },
        }
    });
    std::process::exit(code);
}

/// Logs go to stderr; `RUST_LOG` picks what is logged (default: `default`).
fn init_logs(default: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => logs.try_init(),
        // One JSON object per line, with the span it happened in and the spans around it.
        LogFormat::Json => logs.json().with_current_span(true).with_span_list(true).try_init(),
    };
}

async fn serve(args: ServeArgs) -> i32 {
    init_logs("info", args.log_format);
    let token = match args.token_file.as_deref().map(|p| load_token(Some(p))).transpose() {
        Ok(token) => token.flatten().unwrap_or_default(),
        Err(e) => {
            eprintln!("{e}");
            return e.exit_code();
        }
    };
    if args.token_file.is_some() && token.is_empty() {
        eprintln!("error: token-file: the token file is empty");
        return 2;
    }
    let copy_rate = match args.copy_rate {
        None => None,
        Some(r) if r.is_finite() && r > 0.0 => Some((r * 1024.0 * 1024.0) as u64),
        Some(r) => {
            eprintln!("error: usage: --copy-rate must be a positive number of MiB/s, not {r}");
            return 2;
        }
    };
    let config = ServeConfig {
        data_dir: args.data_dir,
        node_id: args.node_id,
        api: args.api,
        raft: args.raft,
        nbd: args.nbd,
        advertise_api: args.advertise_api,
        advertise_raft: args.advertise_raft,
        join: args.join,
        token,
        copy_rate,
        snapshot_every: args.snapshot_every,
    };
    let running = match server::start(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: serve: {e}");
            return 1;
        }
    };
    let ready = format!(
        "flashcopy: node {} serving the admin API at {} and NBD at nbd://{}",
        running.controller.id, running.api_url, running.nbd_addr
    );
    match args.log_format {
        LogFormat::Text => eprintln!("{ready}"),
        LogFormat::Json => tracing::info!("{ready}"),
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let _ = running.controller.raft.shutdown().await;
    0
}
