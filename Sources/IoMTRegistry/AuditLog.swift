import IoMTCore
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Who asked for a change: the peer of the control socket (SO_PEERCRED) or, when the CLI works
/// without a daemon, the local user.
public struct AuditActor: Hashable, Sendable {
    public var uid: UInt32
    public var user: String?
    public var pid: Int32?
    /// `socket` (through the daemon), `local` (the CLI alone on the state directory), `agent`.
    public var via: String

    public init(uid: UInt32, user: String?, pid: Int32? = nil, via: String) {
        self.uid = uid
        self.user = user
        self.pid = pid
        self.via = via
    }

    /// The calling process's own user.
    public static func local(via: String = "local") -> AuditActor {
        let uid = getuid()
        return AuditActor(uid: uid, user: userName(uid: uid), pid: getpid(), via: via)
    }
}

/// One change to pairing, patient binding or the buffer, as written to `audit.jsonl` and
/// published on `<prefix>/audit` (`schemas/audit.schema.json`, `iomt-audit/1`).
public struct AuditEvent: Hashable, Sendable {
    /// What happened. Open set: `pair`, `assign`, `discharge`, `buffer-export`, `buffer-purge`,
    /// `registry-recovered`.
    public struct Action: RawRepresentable, Hashable, Sendable, ExpressibleByStringLiteral {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public init(stringLiteral value: String) { rawValue = value }
        public static let pair: Action = "pair"
        public static let assign: Action = "assign"
        public static let discharge: Action = "discharge"
        public static let bufferExport: Action = "buffer-export"
        public static let bufferPurge: Action = "buffer-purge"
        public static let registryRecovered: Action = "registry-recovered"
    }

    public var id: ReadingID
    public var at: Timestamp
    public var action: Action
    public var deviceID: String?
    public var patientBefore: String?
    public var patientAfter: String?
    public var actor: AuditActor
    /// `ok`, `refused` or `failed`.
    public var outcome: String
    /// What was refused or why it was forced, counts, file names: free text, no secrets.
    public var detail: String?

    public init(id: ReadingID, at: Timestamp, action: Action, deviceID: String?, patientBefore: String?,
                patientAfter: String?, actor: AuditActor, outcome: String, detail: String? = nil) {
        self.id = id
        self.at = at
        self.action = action
        self.deviceID = deviceID
        self.patientBefore = patientBefore
        self.patientAfter = patientAfter
        self.actor = actor
        self.outcome = outcome
        self.detail = detail
    }

    public static let schema = "iomt-audit/1"

    /// The `iomt-audit/1` document (one line, no trailing newline).
    public func json(gatewayID: String) -> [UInt8] {
        var w = JSONWriter(capacity: 384)
        w.beginObject()
        w.field("schema", AuditEvent.schema)
        w.field("id", id.description)
        w.field("gateway_id", gatewayID)
        w.field("at", at.rfc3339)
        w.field("action", action.rawValue)
        w.field("device_id", deviceID)
        w.key("patient")
        w.beginObject()
        w.field("before", patientBefore)
        w.field("after", patientAfter)
        w.endObject()
        w.key("actor")
        w.beginObject()
        w.field("uid", UInt64(actor.uid))
        w.field("user", actor.user)
        w.key("pid")
        if let pid = actor.pid { w.int(Int64(pid)) } else { w.null() }
        w.field("via", actor.via)
        w.endObject()
        w.field("outcome", outcome)
        w.field("detail", detail)
        w.endObject()
        return w.bytes
    }

    /// Reads a line written by `json(gatewayID:)`.
    public init(json v: JSONValue) throws(RegistryError) {
        func text(_ k: String) throws(RegistryError) -> String {
            guard let s = v[k]?.stringValue else { throw .invalidEntry(field: k, detail: "a string is required") }
            return s
        }
        guard v["schema"]?.stringValue == AuditEvent.schema else { throw .invalidEntry(field: "schema", detail: "expected \(AuditEvent.schema)") }
        guard let id = ReadingID(try text("id")) else { throw .invalidEntry(field: "id", detail: "not a UUID") }
        guard let at = Timestamp(rfc3339: try text("at")) else { throw .invalidEntry(field: "at", detail: "not an RFC 3339 time") }
        guard let actor = v["actor"], let uid = actor["uid"]?.intValue, let via = actor["via"]?.stringValue else {
            throw .invalidEntry(field: "actor", detail: "uid and via are required")
        }
        self.init(id: id, at: at, action: Action(rawValue: try text("action")), deviceID: v["device_id"]?.stringValue,
                  patientBefore: v["patient"]?["before"]?.stringValue, patientAfter: v["patient"]?["after"]?.stringValue,
                  actor: AuditActor(uid: UInt32(truncatingIfNeeded: uid), user: actor["user"]?.stringValue,
                                    pid: actor["pid"]?.intValue.map { Int32(truncatingIfNeeded: $0) }, via: via),
                  outcome: try text("outcome"), detail: v["detail"]?.stringValue)
    }
}

/// The append-only audit log `state_dir/audit.jsonl`: one `iomt-audit/1` JSON line per event,
/// mode 0600, each line fsynced before `append` returns (an event that was reported as done is
/// on disk). Appends are serialized in this process and use `O_APPEND`, so lines from the
/// daemon and a CLI working alone never interleave within a line.
public final class AuditLog: Sendable {
    public let path: String
    public let gatewayID: String
    private let clock: any WallClock
    private let ids = Mutex(ReadingIDGenerator())

    public init(stateDir: String, gatewayID: String, clock: any WallClock = SystemWallClock()) {
        self.path = stateDir + "/audit.jsonl"
        self.gatewayID = gatewayID
        self.clock = clock
    }

    /// Makes an event stamped now with a fresh UUIDv7.
    public func event(_ action: AuditEvent.Action, deviceID: String?, patientBefore: String?, patientAfter: String?,
                      actor: AuditActor, outcome: String = "ok", detail: String? = nil) -> AuditEvent {
        let now = clock.now()
        let id = ids.withLock { $0.next(at: now) }
        return AuditEvent(id: id, at: now, action: action, deviceID: deviceID, patientBefore: patientBefore,
                          patientAfter: patientAfter, actor: actor, outcome: outcome, detail: detail)
    }

    /// Appends one line and fsyncs it. Creates the file 0600 if absent.
    public func append(_ event: AuditEvent) throws(FileError) {
        let line = event.json(gatewayID: gatewayID) + [0x0A]
        try ids.withLock { _ throws(FileError) in
            let created = !Files.exists(path)
            let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw FileError(path: path, operation: "open", errno: errno) }
            defer { close(fd) }
            try Files.writeAll(fd, line, path: path)
            if fsync(fd) != 0 { throw FileError(path: path, operation: "fsync", errno: errno) }
            if created { try Files.syncDirectory(of: path) }
        }
    }

    /// Every event in the file, oldest first. Lines that do not parse are reported, not skipped
    /// silently: they come back in `unreadable` with their line number.
    public func read() throws(FileError) -> (events: [AuditEvent], unreadable: [Int]) {
        guard let bytes = try Files.read(path) else { return ([], []) }
        var events: [AuditEvent] = []
        var bad: [Int] = []
        for (n, line) in bytes.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated() where !line.isEmpty {
            if let v = try? JSONValue.parse(Array(line)), let e = try? AuditEvent(json: v) {
                events.append(e)
            } else {
                bad.append(n + 1)
            }
        }
        return (events, bad)
    }
}
