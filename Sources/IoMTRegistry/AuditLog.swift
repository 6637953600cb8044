import Crypto
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
/// on disk). Appends are serialized in this process and, across processes, by an exclusive
/// `flock` on the file while the line is written with `O_APPEND`, so lines from the daemon and a
/// CLI working alone never interleave.
///
/// At rest (issue 8): with a `sealingKey` (the agent passes `AtRestKey.subkey("audit")`) each
/// new line is sealed on its own, since the file is append-only: `sealed1:` then base64 of
/// nonce || ciphertext || tag (AES-256-GCM), with the file name and the 1-based line number as
/// associated data, so a line cannot be moved or replayed elsewhere undetected. Plaintext lines
/// written before the key was configured stay as they are and stay readable; new lines are
/// sealed. ``checkKey()`` tells a missing or wrong key before anything is appended.
public final class AuditLog: Sendable {
    public let path: String
    public let gatewayID: String
    private let clock: any WallClock
    private let sealingKey: SymmetricKey?
    /// Serializes appends in this process; also the event id generator.
    private let ids = Mutex(ReadingIDGenerator())

    public init(stateDir: String, gatewayID: String, clock: any WallClock = SystemWallClock(), sealingKey: SymmetricKey? = nil) {
        self.path = stateDir + "/audit.jsonl"
        self.gatewayID = gatewayID
        self.clock = clock
        self.sealingKey = sealingKey
    }

    /// Makes an event stamped now with a fresh UUIDv7.
    public func event(_ action: AuditEvent.Action, deviceID: String?, patientBefore: String?, patientAfter: String?,
                      actor: AuditActor, outcome: String = "ok", detail: String? = nil) -> AuditEvent {
        let now = clock.now()
        let id = ids.withLock { $0.next(at: now) }
        return AuditEvent(id: id, at: now, action: action, deviceID: deviceID, patientBefore: patientBefore,
                          patientAfter: patientAfter, actor: actor, outcome: outcome, detail: detail)
    }

    /// Checks that the sealed lines already in the file open with this log's key: throws
    /// ``RegistryError/sealed(path:detail:)`` when the file has sealed lines and no key is
    /// configured, or when the last sealed line does not open (the wrong key). Call at open,
    /// before appending. Changes nothing.
    public func checkKey() throws(RegistryError) {
        let bytes: [UInt8]?
        do { bytes = try Files.read(path) } catch { throw .io(error) }
        guard let bytes else { return }
        let lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false)
        guard let last = lines.indices.last(where: { lines[$0].starts(with: AtRestSealing.auditLinePrefix) }) else { return }
        guard let key = sealingKey else {
            throw .sealed(path: path, detail: "the audit log has sealed lines and no at-rest key is configured (security.key_file or the systemd credential state-key)")
        }
        if AuditLog.unseal(lines[last], path: path, lineNumber: last + 1, key: key) == nil {
            throw .sealed(path: path, detail: "the audit log's sealed lines cannot be opened: wrong key (the at-rest key, security.key_file) or a damaged file")
        }
    }

    /// Appends one line and fsyncs it. Creates the file 0600 if absent. Sealed when a key is
    /// set: the line number (associated data) is counted under the `flock`.
    public func append(_ event: AuditEvent) throws(FileError) {
        let json = event.json(gatewayID: gatewayID)
        try ids.withLock { _ throws(FileError) in
            let created = !Files.exists(path)
            let fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw FileError(path: path, operation: "open", errno: errno) }
            defer { close(fd) }
            while flock(fd, LOCK_EX) != 0 {
                if errno != EINTR { throw FileError(path: path, operation: "flock", errno: errno) }
            }
            var line = json
            var prefix: [UInt8] = []
            if let key = sealingKey {
                let (count, endsWithNewline) = try AuditLog.countLines(fd, path: path)
                if !endsWithNewline { prefix = [0x0A] }  // a torn last line (crash) stays on its own line
                let number = count + (endsWithNewline ? 1 : 2)
                guard let box = AtRestSealing.seal(json, key: key, associatedData: AtRestSealing.auditAssociatedData(path: path, lineNumber: number)) else {
                    throw FileError(path: path, operation: "seal an audit line for", errno: EIO)
                }
                line = AtRestSealing.auditLinePrefix + Base64.encode(box)
            }
            try Files.writeAll(fd, prefix + line + [0x0A], path: path)
            if fsync(fd) != 0 { throw FileError(path: path, operation: "fsync", errno: errno) }
            if created { try Files.syncDirectory(of: path) }
        }
    }

    /// The number of newline characters in the file and whether it is empty or ends with one.
    static func countLines(_ fd: Int32, path: String) throws(FileError) -> (count: Int, endsWithNewline: Bool) {
        var count = 0
        var last: UInt8 = 0x0A
        var offset: off_t = 0
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, offset) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError(path: path, operation: "read", errno: errno)
            }
            if n == 0 { break }
            for b in chunk[0..<n] where b == 0x0A { count += 1 }
            last = chunk[n - 1]
            offset += off_t(n)
        }
        return (count, last == 0x0A)
    }

    static func unseal(_ line: ArraySlice<UInt8>, path: String, lineNumber: Int, key: SymmetricKey) -> [UInt8]? {
        guard let box = Base64.decode(line.dropFirst(AtRestSealing.auditLinePrefix.count)) else { return nil }
        return AtRestSealing.open(box, key: key, associatedData: AtRestSealing.auditAssociatedData(path: path, lineNumber: lineNumber))
    }

    /// Every event in the file, oldest first: plaintext lines and, with the key, sealed ones.
    /// Lines that do not parse or do not open are reported, not skipped silently: they come
    /// back in `unreadable` with their line number. Throws ``RegistryError/sealed(path:detail:)``
    /// when the file has sealed lines and no key is set, or none of them opens (wrong key).
    public func read() throws(RegistryError) -> (events: [AuditEvent], unreadable: [Int]) {
        let bytes: [UInt8]?
        do { bytes = try Files.read(path) } catch { throw .io(error) }
        guard let bytes else { return ([], []) }
        var events: [AuditEvent] = []
        var bad: [Int] = []
        var sealedLines = 0
        var opened = 0
        for (n, line) in bytes.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated() where !line.isEmpty {
            var text = Array(line)
            if line.starts(with: AtRestSealing.auditLinePrefix) {
                sealedLines += 1
                guard let key = sealingKey else {
                    throw .sealed(path: path, detail: "the audit log has sealed lines and no at-rest key is configured (security.key_file or the systemd credential state-key)")
                }
                guard let plain = AuditLog.unseal(line, path: path, lineNumber: n + 1, key: key) else {
                    bad.append(n + 1)
                    continue
                }
                opened += 1
                text = plain
            }
            if let v = try? JSONValue.parse(text), let e = try? AuditEvent(json: v) {
                events.append(e)
            } else {
                bad.append(n + 1)
            }
        }
        if sealedLines > 0 && opened == 0 {
            throw .sealed(path: path, detail: "none of the audit log's \(sealedLines) sealed lines opens: wrong key (the at-rest key, security.key_file) or a damaged file")
        }
        return (events, bad)
    }
}
