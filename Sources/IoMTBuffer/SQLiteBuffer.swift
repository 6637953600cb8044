import Crypto
import IoMTCore
import Logging

/// The durable store-and-forward buffer: every message stays in an SQLite database (WAL mode,
/// `synchronous=FULL`) until the broker acknowledged it and `ack` deleted it.
///
/// All SQLite work runs on one dedicated thread (the actor's executor), never on Swift's
/// cooperative pool. Each `append`, `recordLosses` and `ack` call is one transaction with one
/// commit (one fsync of the WAL): callers batch, this is the group commit.
///
/// Leases live only in memory. After a restart every stored row is unleased again and will be
/// delivered again with its original id: consumers de-duplicate on the id.
///
/// Loss accounting: every reading that is refused or evicted because of `maxBytes` is recorded,
/// in the same transaction, as a gap row (coalesced per device over contiguous sequence numbers
/// with the same reason) and counted in the device's `lost_total`. Gap rows are handed out by
/// `lease` ahead of everything else, rendered as `.gap` messages on `gapTopic`.
///
/// Encryption at rest (issue 8): with a `sealingKey`, every stored payload is sealed with
/// AES-256-GCM (fresh 12-byte nonce; the reading id and the topic as associated data) on the
/// storage thread inside the append transaction, and opened again by `lease` and `pending`.
/// Not sealed, because they hold no patient data: the row metadata (id, kind, priority, device
/// id, sequence number, creation time, size, topic), the gap rows and the per-device state
/// (sequence high-water marks, loss totals, source cursors). Whoever copies the file still sees
/// how many readings of which device were stored when (traffic analysis).
public actor SQLiteBuffer {
    /// Priority given to rendered gap records.
    public static let gapPriority: UInt8 = 255
    /// Fixed per-row overhead (bytes) counted against `maxBytes` on top of payload, topic and
    /// device id, so that many tiny messages cannot exceed the budget unnoticed.
    public static var perRowOverhead: Int64 { BufferStore.perRowOverhead }

    private let executor: DedicatedThreadExecutor
    private let store: BufferStore

    /// The database file.
    public nonisolated let path: String
    /// The limit on the logical size of stored messages.
    public nonisolated let maxBytes: Int64
    /// If the database was corrupt at open: where it was moved (`<path>.corrupt-<UTC time>`,
    /// with its `-wal` and `-shm`). The file is never deleted.
    public nonisolated let recoveredFromCorruption: String?
    /// Rows (device states, gap rows, messages) copied out of the corrupt database.
    public nonisolated let salvagedRowCount: Int
    /// True when new payloads are sealed at rest (a `sealingKey` was given).
    public nonisolated let isSealing: Bool

    /// The dedicated storage thread: every actor-isolated method (and so every SQLite call)
    /// runs there, never on the cooperative pool.
    public nonisolated var unownedExecutor: UnownedSerialExecutor {
        executor.asUnownedSerialExecutor()
    }

    /// Opens or creates the buffer at `path`.
    ///
    /// Runs `PRAGMA quick_check` on an existing file first. A corrupt file, or one that is not a
    /// database, is renamed (with its `-wal` and `-shm`) to `<path>.corrupt-<UTC time>` and a
    /// fresh database is created; readable rows are salvaged into it row by row. The move is
    /// logged as an error and reported in `recoveredFromCorruption`.
    ///
    /// With a `sealingKey` the key is checked BEFORE the file is opened for writing, against the
    /// key check in the `meta` table (a known constant sealed under the key): a missing or wrong
    /// key throws and leaves the file exactly as it was (never moved aside, nothing deleted). A new
    /// database, or a v1 / unsealed one, gets a key check and is sealed from then on; its old
    /// plaintext rows stay readable and are delivered as they are.
    ///
    /// - Parameters:
    ///   - maxBytes: limit on the logical size of stored messages (see `perRowOverhead`; a sealed
    ///     row also counts its 28 bytes of nonce and tag).
    ///   - onFull: what `append` does when a message does not fit.
    ///   - gatewayID, gapTopic: used to render gap records.
    ///   - clock: the time written into gap records and corrupt-file names.
    ///   - sealingKey: the at-rest key (the agent passes `AtRestKey.subkey("buffer")`), or nil
    ///     to store payloads in plaintext (refused when the file holds sealed rows).
    /// - Throws: `BufferError` naming the path, e.g. `.cannotOpen`, `.readOnly`, `.schemaTooNew`,
    ///   `.cannotMoveAside`, `.keyRequired`, `.wrongKey`.
    public init(path: String, maxBytes: Int64, onFull: OnFullPolicy, gatewayID: String, gapTopic: String,
                logger: Logger? = nil, clock: any WallClock = SystemWallClock(),
                sealingKey: SymmetricKey? = nil) async throws(BufferError) {
        let executor = try DedicatedThreadExecutor(name: "iomt-buffer", pathForErrors: path)
        let config = BufferConfig(path: path, maxBytes: maxBytes, onFull: onFull, gatewayID: gatewayID,
                                  gapTopic: gapTopic, logger: logger, clock: clock,
                                  sealer: sealingKey.map { PayloadSealer(key: $0) })
        let store: BufferStore
        do throws(BufferError) {
            store = try await executor.run { () throws(BufferError) -> BufferStore in try BufferStore.open(config) }
        } catch {
            executor.shutdown()
            throw error
        }
        self.executor = executor
        self.store = store
        self.path = path
        self.maxBytes = maxBytes
        self.recoveredFromCorruption = store.recoveredFromCorruption
        self.salvagedRowCount = store.salvagedRows
        self.isSealing = sealingKey != nil
    }

    deinit {
        executor.shutdown()
    }

    /// Closes the database. Later calls throw `BufferError.closed`.
    public func close() {
        store.close()
    }

    /// Stores a batch of messages in ONE transaction, together with the per-device sequence
    /// high-water marks (`sequences`, merged with the sequences of the messages and of any
    /// losses, never lowered).
    ///
    /// When the batch does not fit in `maxBytes`: `.reject` refuses the messages that do not fit
    /// (`rejectedIndices`); `.dropOldest` evicts the oldest non-leased readings, lowest priority
    /// first, and refuses a message only if eviction cannot make room. Every refused or evicted
    /// reading is recorded as a loss in the same transaction.
    ///
    /// On error nothing is stored (the transaction rolled back); after `.diskFull` simply call
    /// again once space is available.
    public func append(_ messages: [OutgoingMessage], sequences: [String: UInt64] = [:]) throws(BufferError) -> AppendOutcome {
        try store.append(messages, sequences: sequences)
    }

    /// Records losses decided outside the buffer (a storage error earlier, a source that dropped
    /// data) as coalesced gap rows, plus the sequence high-water marks, in one transaction.
    public func recordLosses(_ losses: [LostReading], sequences: [String: UInt64] = [:]) throws(BufferError) {
        try store.recordLosses(losses, sequences: sequences)
    }

    /// Hands out up to `limit` rows not currently leased: gap records first, then messages by
    /// priority (high first) and insertion order.
    public func lease(limit: Int) throws(BufferError) -> [StoredMessage] {
        try store.lease(limit: limit, backlogLimit: 0, liveAfter: nil)
    }

    /// Live-first leasing. Rows with a row id above `liveAfter` (see `maxRowID()`) are live,
    /// the others backlog (`isBacklog`). Gap records come first; backlog rows get up to
    /// `backlogLimit` of the `limit` places (so they never starve), live rows the rest, and
    /// places live rows do not need go to more backlog. The result lists gaps, live, backlog.
    /// With `liveAfter == nil` this is `lease(limit:)`.
    public func lease(limit: Int, backlogLimit: Int, liveAfter: Int64?) throws(BufferError) -> [StoredMessage] {
        try store.lease(limit: limit, backlogLimit: backlogLimit, liveAfter: liveAfter)
    }

    /// Gives leased rows back without deleting them; they will be leased again.
    public func release(_ tokens: [BufferToken]) {
        store.release(tokens)
    }

    /// Deletes acknowledged rows in one transaction and returns how many were deleted (rows
    /// already gone are ignored). On error nothing is deleted and the tokens are released, so
    /// the rows are delivered again (duplicates carry identical ids).
    @discardableResult
    public func ack(_ tokens: [BufferToken]) throws(BufferError) -> Int {
        try store.ack(tokens)
    }

    /// The highest message row id handed out so far (row ids are never reused): the boundary
    /// between backlog and live rows for `lease(limit:backlogLimit:liveAfter:)`.
    public func maxRowID() -> Int64 {
        store.maxRowID
    }

    /// The persisted per-device sequence high-water marks.
    public func loadSequences() throws(BufferError) -> [String: UInt64] {
        try store.loadSequences()
    }

    /// The per-device source cursors stored with the readings (e.g. a meter's download
    /// watermark), written in the same transaction as the reading that moved them.
    public func loadCursors() throws(BufferError) -> [String: String] {
        try store.loadCursors()
    }

    /// Message rows discarded since open because their sealed payload did not open with the
    /// key (changed on disk or damaged); each reading among them is also a loss
    /// (`LossReason.unreadableAtRest`).
    public func unreadableAtRestCount() -> Int {
        store.unreadableTotal
    }

    /// Readings recorded as lost, per device, since the database was created.
    public func lostTotals() -> [String: UInt64] {
        store.lostTotals
    }

    /// Counts and sizes for status output.
    public func stats() throws(BufferError) -> BufferStats {
        try store.stats()
    }

    /// Stored readings (not yet acknowledged) per device id.
    public func pendingReadingCounts() throws(BufferError) -> [String: Int] {
        try store.pendingReadingCounts()
    }

    /// Up to `limit` stored message rows with a row id above `after` (the token's row id), in
    /// row order; only readings of `deviceIDs` when given. Leases nothing, changes nothing: for
    /// `buffer export`, which pages through the buffer while the forwarder keeps sending.
    /// Sealed payloads come back opened: the export is plaintext (the operator asked for it). A
    /// row that does not open is left out and logged (the next `lease` records it as lost).
    public func pending(after: Int64, limit: Int, deviceIDs: Set<String>? = nil) throws(BufferError) -> [StoredMessage] {
        try store.pending(after: after, limit: limit, deviceIDs: deviceIDs)
    }

    /// Deletes every stored reading not currently in flight (only of `deviceIDs` when given)
    /// and records each as lost with `reason` in the same transaction, so gap records announce
    /// them. Audit events, alerts and gap records stay. Works on sealed rows without opening
    /// them (it needs only the row metadata).
    public func purgeReadings(deviceIDs: Set<String>? = nil, reason: LossReason) throws(BufferError) -> PurgeOutcome {
        try store.purgeReadings(deviceIDs: deviceIDs, reason: reason)
    }

    /// Test hook: true when called on the dedicated storage thread (not the cooperative pool).
    func _isOnStorageThread() -> Bool {
        executor.isIsolatingCurrentContext() == true
    }

    /// Test hook: an integer PRAGMA of the buffer's connection (e.g. `secure_delete`).
    func _pragmaInt(_ name: String) throws(BufferError) -> Int64? {
        try store.pragmaInt(name)
    }

    /// Test hook: the message tables in the database file, in row order (see `Segment`).
    func _messageTables() throws(BufferError) -> [String] {
        try store.messageTables()
    }

    /// Test hook: `PRAGMA query_only`, to make every write fail with `SQLITE_READONLY`.
    func _setQueryOnly(_ on: Bool) throws(BufferError) {
        try store.setQueryOnly(on)
    }

    /// Test hook: caps the database size in pages (`PRAGMA max_page_count`) to provoke `SQLITE_FULL`.
    func _setMaxPageCount(_ pages: Int) throws(BufferError) {
        try store.setMaxPageCount(pages)
    }
}
