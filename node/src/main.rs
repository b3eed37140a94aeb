use clap::Parser;
use node::cli::{self, Cli, Verb};
use node::server;

fn main() {
    let cli = Cli::parse();
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
