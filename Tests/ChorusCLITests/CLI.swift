import Testing

/// Every end-to-end test of the `chorus` binary, one at a time. Each blocks the thread it
/// runs on while its processes work (posix_spawn + waitpid, pipes read to the end); this
/// machine's Swift concurrency pool has one thread per core (two here), so two such tests at
/// once left no thread for the async tests beside them, which stalled for tens of seconds
/// (a 10 ms sleep outlasted a 30 s one). One at a time, one thread stays free.
@Suite(.serialized) enum CLI {}
