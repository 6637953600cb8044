import IoMTCore

/// What `append` does when a message would push the stored size over `maxBytes`.
public enum OnFullPolicy: String, Hashable, Sendable {
    /// Refuse the messages that do not fit; each refused reading is recorded as a loss
    /// (`LossReason.bufferFullRejected`).
    case reject
    /// Evict the oldest non-leased readings (lowest priority first, then oldest) to make room;
    /// each evicted reading is recorded as a loss (`LossReason.bufferFullEvicted`).
    case dropOldest
}

/// Names one stored row handed out by `lease`: a message row or a gap row.
public enum BufferToken: Hashable, Sendable {
    /// A row of the message table (its monotonic row id, comparable with `maxRowID()`).
    case message(Int64)
    /// A row of the gap table (coalesced loss record).
    case gap(Int64)
}

/// A message handed out by `lease`: it stays on disk until `ack`.
public struct StoredMessage: Hashable, Sendable {
    /// Pass back to `ack` once the broker acknowledged it, or to `release` to give it back.
    public var token: BufferToken
    /// The message to publish. For a gap row this is rendered on the fly (kind `.gap`), with the
    /// gap row's stable id, so a redelivered gap record carries the same id.
    public var message: OutgoingMessage
    /// True for message rows at or below the `liveAfter` boundary of the lease call.
    public var isBacklog: Bool

    /// Creates a stored message (the buffer makes these; public for tests and fakes).
    public init(token: BufferToken, message: OutgoingMessage, isBacklog: Bool) {
        self.token = token
        self.message = message
        self.isBacklog = isBacklog
    }
}

/// One reading that was not (or is no longer) stored, for loss accounting.
public struct LostReading: Hashable, Sendable {
    /// The device whose reading was lost.
    public var deviceID: String
    /// The sequence number the lost reading had (or would have had).
    public var sequence: UInt64
    public var reason: LossReason
    /// When the loss was decided.
    public var at: Timestamp

    /// Describes one lost reading.
    public init(deviceID: String, sequence: UInt64, reason: LossReason, at: Timestamp) {
        self.deviceID = deviceID
        self.sequence = sequence
        self.reason = reason
        self.at = at
    }
}

/// The result of one `append` (one transaction).
public struct AppendOutcome: Hashable, Sendable {
    /// Per input index: the row id the message was stored under, or nil if it was refused
    /// (listed in `rejectedIndices`) or stored and then evicted again within the same batch
    /// (listed in `evicted`).
    public var rowIDs: [Int64?]
    /// Indices of input messages that were refused because the buffer was full.
    public var rejectedIndices: [Int]
    /// Readings evicted to make room (`.dropOldest`), each recorded as a loss.
    public var evicted: [LostReading]
    /// Every loss recorded in this transaction (refused readings and evicted readings).
    /// Refused messages without a device id and sequence number (alerts, events) cannot be
    /// recorded as a gap; they appear only in `rejectedIndices`.
    public var losses: [LostReading]

    /// Creates an outcome (the buffer makes these; public for tests and fakes).
    public init(rowIDs: [Int64?], rejectedIndices: [Int], evicted: [LostReading], losses: [LostReading]) {
        self.rowIDs = rowIDs
        self.rejectedIndices = rejectedIndices
        self.evicted = evicted
        self.losses = losses
    }

    /// Number of input messages now stored.
    public var storedCount: Int { rowIDs.reduce(0) { $0 + ($1 == nil ? 0 : 1) } }
}

/// A snapshot of the buffer for status output.
public struct BufferStats: Hashable, Sendable {
    /// Message rows stored (not yet acknowledged), leased or not.
    public var messageCount: Int
    /// Logical size of the stored messages (see `SQLiteBuffer.perRowOverhead`).
    public var bytes: Int64
    /// The configured limit on `bytes`.
    public var maxBytes: Int64
    /// `createdAt` of the oldest stored message (by insertion order), nil when empty.
    public var oldestCreatedAt: Timestamp?
    /// Message and gap rows currently leased (in flight).
    public var leasedCount: Int
    /// Gap rows not yet acknowledged.
    public var gapRowsPending: Int
    /// Readings lost per device since the database was created.
    public var lostByDevice: [String: UInt64]
    /// Sum of `lostByDevice`.
    public var totalLost: UInt64
    /// The database file.
    public var databasePath: String
    /// Size of the database file plus its WAL on disk.
    public var databaseFileBytes: Int64
    /// Where a corrupt database was moved at open, if that happened.
    public var recoveredFromCorruption: String?
}

/// The result of `purgeReadings`.
public struct PurgeOutcome: Hashable, Sendable {
    /// Readings deleted and recorded as lost.
    public var purged: Int
    /// Readings left because they were in flight (they are delivered or come back).
    public var leftInFlight: Int
    /// The losses recorded (one per purged reading with a device and sequence number).
    public var losses: [LostReading]

    public init(purged: Int, leftInFlight: Int, losses: [LostReading]) {
        self.purged = purged
        self.leftInFlight = leftInFlight
        self.losses = losses
    }
}

extension LossReason {
    /// Deleted by an operator (`iomt-agent buffer purge --confirm`).
    public static let purgedByOperator: LossReason = "purged-by-operator"
    /// A sealed reading that no longer opens with the buffer's (right) at-rest key: changed on
    /// disk, moved to another row, or damaged. It is never published (issue 8).
    public static let unreadableAtRest: LossReason = "unreadable-at-rest"
}
