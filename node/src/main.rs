use clap::Parser;
use node::cli::{self, Cli, Verb};
use node::server;

fn main() {
    let cli = Cli::parse();
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
