use clap::Parser;
use node::cli::{self, Cli, Verb};
use node::server;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version: printed to stdout, exit 0.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // Like every other usage error: "error: usage: ...", exit 2 (clap's own first line
            // has no code for scripts to match); clap's tip and usage lines follow.
            let text = e.render().to_string();
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            eprint!("error: usage: {text}");
            std::process::exit(2);
        }
    };
    if !matches!(cli.verb, Verb::Serve(_)) {
        // A command's output piped into `head` ends it quietly, as it would `cat`, instead of
        // panicking on the closed pipe (Rust ignores SIGPIPE; the server must, for its sockets).
        // SAFETY: setting a signal's disposition to the default before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    let code = runtime.block_on(async {
        match cli.verb {
            Verb::Serve(args) => server::run(*args).await,
            verb => cli::run(verb).await,
        }
    });
    std::process::exit(code);
}
