//! openraft's own conformance suite for log and state-machine stores, against real RocksDB.

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use storage::{LogStore, StateMachineStore, TypeConfig};
use tempfile::TempDir;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (log, state) = storage::open(dir.path()).expect("open storage");
        Ok((dir, log, state))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).unwrap();
}
