import IoMTBuffer
import IoMTConfig
import IoMTControl
import IoMTCore
import IoMTRegistry
import Logging
#if canImport(Glibc)
import Glibc
#endif

public struct ControlCLIError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The CLI's side of the control commands: talks to the running daemon over its socket, or,
/// when none runs and the command can work alone, opens the state directory itself
/// (respecting the buffer's instance lock: if a daemon holds it, only the socket is used).
public final class ControlCLISession {
    enum Backend {
        case daemon(ControlClient)
        case alone(StandaloneControl)
    }

    let backend: Backend
    public let socketPath: String

    /// `standalone`: the command may run without a daemon.
    public init(config: AgentConfig, standalone: Bool, logger: Logger) async throws {
        socketPath = config.control.socket
        do {
            backend = .daemon(try ControlClient(path: config.control.socket))
        } catch ControlClientError.noAgent(let path) {
            guard standalone else { throw ControlClientError.noAgent(path: path) }
            do {
                backend = .alone(try await StandaloneControl(config: config, logger: logger))
            } catch let e as BufferError {
                if case .busy = e {
                    throw ControlCLIError("an agent holds the buffer in \(config.stateDir) but its control socket \(path) does not answer: check control.socket in the configuration, or restart it with `systemctl restart iomt-agent`")
                }
                throw ControlCLIError("cannot open the state directory \(config.stateDir) without the agent: \(e)")
            }
        }
    }

    /// True when a daemon serves the commands.
    public var viaDaemon: Bool {
        if case .daemon = backend { return true }
        return false
    }

    public func call(_ cmd: String, _ args: JSONValue = .object([]), onEvent: (JSONValue) -> Void = { _ in },
                     onPrompt: (ServerMessage.Prompt) throws -> JSONValue = { _ in .null }) async throws -> JSONValue {
        switch backend {
        case .daemon(let client):
            return try client.call(cmd, args: args, onEvent: onEvent, onPrompt: onPrompt)
        case .alone(let alone):
            guard ControlService.standaloneCommands.contains(cmd) else {
                throw ControlClientError.noAgent(path: socketPath)
            }
            return try await alone.service.execute(ControlRequest(id: 1, cmd: cmd, args: args), actor: .local(), session: nil)
        }
    }

    /// Writes the buffered messages (optionally only readings of `devices`) to `path` as JSON
    /// lines, page by page, without deleting anything. The file is created (never overwritten)
    /// with mode 0600 and fsynced. Returns the number of lines and the last row id written.
    public func exportBuffer(to path: String, devices: [String]? = nil) async throws -> (count: Int, throughRow: Int64) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw ControlCLIError("cannot create \(path): \(String(cString: strerror(errno))) (it must not exist yet)")
        }
        defer { Glibc.close(fd) }
        var after: Int64 = 0
        var until: Int64?
        var count = 0
        while true {
            var args: [JSONValue.Member] = [.init("after", .int(after)), .init("limit", .int(500))]
            if let until { args.append(.init("until", .int(until))) } else { args.append(.init("file", .string(path))) }
            if let devices { args.append(.init("devices", .array(devices.map { .string($0) }))) }
            let page = try await call("buffer.export", .object(args))
            let rows = page["rows"]?.arrayValue ?? []
            until = page["until"]?.intValue ?? until
            var bytes: [UInt8] = []
            for r in rows { bytes += r.bytes + [0x0A] }
            try Files.writeAll(fd, bytes, path: path)
            count += rows.count
            if let last = rows.last?["row"]?.intValue { after = last }
            guard page["next_after"]?.intValue != nil, !rows.isEmpty else { break }
        }
        guard fsync(fd) == 0 else { throw ControlCLIError("fsync \(path): \(String(cString: strerror(errno)))") }
        return (count, after)
    }

    public func close() async {
        if case .alone(let alone) = backend { await alone.close() }
    }
}

/// The daemon's command set over the state directory, for the CLI when no daemon runs.
public final class StandaloneControl: Sendable {
    let service: ControlService
    let buffer: SQLiteBuffer
    let stateDir: String

    /// Throws `BufferError.busy` when a daemon holds the buffer.
    public init(config: AgentConfig, logger: Logger) async throws {
        stateDir = config.stateDir
        try StateDirectory.prepare(config.stateDir)
        let topics = Topics(prefix: config.broker.topicPrefix)
        // The daemon's at-rest key: the buffer refuses a missing or wrong one (issue 8).
        let atRestKey = try AtRestKey.load(config: config, environment: AtRestKey.credentialsEnvironment())
        buffer = try await SQLiteBuffer(
            path: config.stateDir + "/buffer.db", maxBytes: config.buffer.maxBytes,
            onFull: config.buffer.onFull == .dropOldest ? .dropOldest : .reject,
            gatewayID: config.gateway.id, gapTopic: topics.gaps, logger: logger,
            sealingKey: atRestKey?.subkey("buffer"))
        let registry = try DeviceRegistry(stateDir: config.stateDir, sealingKey: atRestKey?.subkey("registry"))
        // The broker copy of audit events names patients as the daemon would (pseudonyms when configured).
        let patientReference = try config.output.patientPseudonymKeyFile.map { path throws(AgentError) in
            try PatientReference(keyFile: path)
        } ?? .identity
        let auditLog = AuditLog(stateDir: config.stateDir, gatewayID: config.gateway.id, sealingKey: atRestKey?.subkey("audit"))
        try auditLog.checkKey()
        let audit = AuditTrail(log: auditLog,
                               buffer: buffer, topic: topics.audit, logger: logger, patientReference: patientReference)
        let agent = Agent(config: config, logger: logger)
        service = ControlService(config: config, buffer: buffer, registry: registry, audit: audit,
                                 sources: agent.makeSources(), live: nil, bluetooth: nil, clock: SystemWallClock(),
                                 logger: logger)
    }

    public func close() async {
        await buffer.close()
        StandaloneControl.restoreOwnership(of: stateDir)
    }

    /// When root works on a state directory that belongs to the agent's user, the files it
    /// created (registry, audit log, SQLite's WAL and lock files) are given back to that user,
    /// so the daemon can still write them.
    static func restoreOwnership(of dir: String) {
        var st = stat()
        guard getuid() == 0, stat(dir, &st) == 0, st.st_uid != 0, let d = opendir(dir) else { return }
        defer { closedir(d) }
        while let entry = readdir(d) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            guard name != ".", name != ".." else { continue }
            var f = stat()
            let path = dir + "/" + name
            if lstat(path, &f) == 0, f.st_uid != st.st_uid { _ = lchown(path, st.st_uid, st.st_gid) }
        }
    }
}
