import IoMTCore

/// What the agent needs from the durable buffer. `IoMTBuffer.SQLiteBuffer` is the one
/// implementation; the protocol keeps the agent's logic readable apart from SQLite.
public protocol DurableStore: Sendable {
    /// One transaction: the messages and the per-device sequence high-water marks.
    func append(_ messages: [OutgoingMessage], sequences: [String: UInt64]) async throws -> StoreAppendResult
    /// Records losses decided outside the buffer (e.g. while storage failed).
    func recordLosses(_ losses: [LossEntry], sequences: [String: UInt64]) async throws
    func loadSequences() async throws -> [String: UInt64]
    /// Up to `limit` unleased messages in delivery order (gap records and higher priority first).
    /// `after`/`upTo` restrict by row id to split live traffic from backlog.
    func lease(limit: Int, after: Int64?, upTo: Int64?) async throws -> [LeasedMessage]
    func ack(_ tokens: [StoreToken]) async throws
    func release(_ tokens: [StoreToken]) async
    func maxRowID() async throws -> Int64
    func snapshot() async -> StoreSnapshot
}

public struct StoreAppendResult: Sendable {
    /// Indices (into the appended batch) refused because the buffer was full (`reject`).
    public var rejected: Set<Int>
    public init(rejected: Set<Int>) { self.rejected = rejected }
}

/// Identifies a leased row (message or gap record) for ack or release.
public struct StoreToken: Hashable, Sendable {
    public var rowID: Int64
    public var isGap: Bool
    public init(rowID: Int64, isGap: Bool) {
        self.rowID = rowID
        self.isGap = isGap
    }
}

public struct LeasedMessage: Sendable {
    public var token: StoreToken
    public var message: OutgoingMessage
    public init(token: StoreToken, message: OutgoingMessage) {
        self.token = token
        self.message = message
    }
}

/// Buffer health for the status topic and the CLI.
public struct StoreSnapshot: Sendable {
    public var messages: Int
    public var bytes: Int64
    public var maxBytes: Int64
    public var oldestCreatedAt: Timestamp?
    public var lostTotal: UInt64
    public var lostByDevice: [String: UInt64]
    public var lastError: String?
    public init(messages: Int, bytes: Int64, maxBytes: Int64, oldestCreatedAt: Timestamp?, lostTotal: UInt64,
                lostByDevice: [String: UInt64], lastError: String?) {
        self.messages = messages
        self.bytes = bytes
        self.maxBytes = maxBytes
        self.oldestCreatedAt = oldestCreatedAt
        self.lostTotal = lostTotal
        self.lostByDevice = lostByDevice
        self.lastError = lastError
    }
}
