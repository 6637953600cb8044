import IoMTAlerts
import IoMTBuffer
import IoMTConfig
import IoMTControl
import IoMTCore
import IoMTRegistry
import Logging
import Synchronization

/// The commands of the control socket (docs/control-protocol.md), served by the daemon and,
/// for `status`, `devices`, `buffer stats`, `buffer export` and `assign`, also by the CLI
/// working alone on the state directory when no daemon runs (`live == nil`).
public struct ControlService: ControlHandler {
    /// What only a running daemon has.
    public struct Live: Sendable {
        let status: StatusReporter
        let ingestor: Ingestor
        let forwarder: Forwarder
    }

    let config: AgentConfig
    let buffer: SQLiteBuffer
    let registry: DeviceRegistry
    let audit: AuditTrail
    let sources: [any ReadingSource]
    let live: Live?
    let bluetooth: (any BluetoothControl)?
    let clock: any WallClock
    let logger: Logger
    /// The running alert service (issue 9); nil without a daemon or with alerts disabled.
    var alerts: AlertService?

    init(config: AgentConfig, buffer: SQLiteBuffer, registry: DeviceRegistry, audit: AuditTrail,
         sources: [any ReadingSource], live: Live?, bluetooth: (any BluetoothControl)?, clock: any WallClock,
         logger: Logger) {
        self.config = config
        self.buffer = buffer
        self.registry = registry
        self.audit = audit
        self.sources = sources
        self.live = live
        self.bluetooth = bluetooth
        self.clock = clock
        self.logger = logger
    }

    /// Commands that work without a daemon.
    public static let standaloneCommands: Set<String> = ["hello", "status", "devices", "assign", "buffer.stats", "buffer.export", "alerts"]

    public func handle(_ request: ControlRequest, session: ControlSession) async throws -> JSONValue {
        let actor = AuditActor(uid: session.peer.uid, user: userName(uid: session.peer.uid), pid: session.peer.pid, via: "socket")
        return try await execute(request, actor: actor, session: session)
    }

    /// Runs one command. `session` is nil when the CLI runs it alone (no streaming, no prompts).
    public func execute(_ request: ControlRequest, actor: AuditActor, session: ControlSession?) async throws -> JSONValue {
        let a = request.args
        switch request.cmd {
        case "hello":
            return .obj(["agent": .string(Agent.version), "versions": .array(ControlProtocol.supportedVersions.map { .int($0) }),
                         "gateway_id": .string(config.gateway.id), "daemon": .bool(live != nil)])
        case "status": return await status()
        case "devices": return await devices()
        case "assign":
            return try await assign(device: try Self.text(a, "device"), patient: try Self.text(a, "patient"), actor: actor)
        case "discharge": return try await discharge(a, actor: actor)
        case "buffer.stats": return try await bufferStats()
        case "buffer.export": return try await export(a, actor: actor)
        case "buffer.purge": return try await purge(a, actor: actor)
        case "scan": return try await scan(a, session: session)
        case "pair": return try await pair(a, actor: actor, session: session)
        case "alerts": return try await activeAlerts()
        default:
            throw ControlError(.unknownCommand, "unknown command \(request.cmd); known: hello, status, devices, assign, discharge, buffer.stats, buffer.export, buffer.purge, scan, pair, alerts")
        }
    }

    // MARK: arguments

    static func text(_ args: JSONValue, _ key: String) throws(ControlError) -> String {
        guard let s = args[key]?.stringValue, !s.isEmpty else { throw ControlError(.invalidArgument, "argument \(key) (a non-empty string) is required") }
        return s
    }

    static func optionalText(_ args: JSONValue, _ key: String) throws(ControlError) -> String? {
        guard let v = args[key], !v.isNull else { return nil }
        guard let s = v.stringValue else { throw ControlError(.invalidArgument, "argument \(key) must be a string") }
        return s
    }

    static func int(_ args: JSONValue, _ key: String, default d: Int64, range: ClosedRange<Int64>) throws(ControlError) -> Int64 {
        guard let v = args[key], !v.isNull else { return d }
        guard let i = v.intValue, range.contains(i) else {
            throw ControlError(.invalidArgument, "argument \(key) must be an integer in \(range.lowerBound)...\(range.upperBound)")
        }
        return i
    }

    // MARK: status and devices

    func bufferJSON(_ stats: BufferStats?, pending: [String: Int]) -> JSONValue {
        guard let s = stats else { return .obj(["error": .string("buffer statistics unavailable")]) }
        let age = s.oldestCreatedAt.map { JSONValue.double(Double(clock.now().millisecondsSinceEpoch - $0.millisecondsSinceEpoch) / 1000) } ?? .null
        return .obj([
            "messages": .int(Int64(s.messageCount)), "bytes": .int(s.bytes), "max_bytes": .int(s.maxBytes),
            "oldest_unsent_age_s": age, "in_flight": .int(Int64(s.leasedCount)), "gap_records_pending": .int(Int64(s.gapRowsPending)),
            "readings_lost": .int(Int64(bitPattern: s.totalLost)),
            "readings_by_device": .object(pending.sorted { $0.key < $1.key }.map { .init($0.key, .int(Int64($0.value))) }),
            "lost_by_device": .object(s.lostByDevice.sorted { $0.key < $1.key }.map { .init($0.key, .int(Int64(bitPattern: $0.value))) }),
            "database": .string(s.databasePath), "file_bytes": .int(s.databaseFileBytes),
            "recovered_from_corruption": .opt(s.recoveredFromCorruption),
        ])
    }

    func status() async -> JSONValue {
        let stats = try? await buffer.stats()
        let pending = (try? await buffer.pendingReadingCounts()) ?? [:]
        var broker: [JSONValue.Member] = [.init("urls", .array(config.broker.endpoints.map { .string($0.description) }))]
        var devicesFromStatus: JSONValue = .array([])
        if let live {
            let connected = await live.forwarder.isConnected
            let doc = (try? JSONValue.parse(await live.status.online(buffer: buffer, ingestor: live.ingestor).payload)) ?? .null
            broker += [.init("state", .string(connected ? "connected" : "disconnected")), .init("connected_to", doc["broker"] ?? .null)]
            devicesFromStatus = doc["devices"] ?? .array([])
        } else {
            broker += [.init("state", .string("agent not running")), .init("connected_to", .null)]
            devicesFromStatus = .array(sources.map { s in
                let d = s.sourceStatus
                return .obj(["id": .string(d.deviceID), "profile": .string(d.profile), "transport": .string(d.transport.rawValue),
                             "connected": .bool(false), "detail": .string("agent not running"), "last_reading_at": .null])
            })
        }
        let adapter: JSONValue
        if let bluetooth { adapter = .string(await bluetooth.adapterDescription) } else { adapter = .null }
        let serialPorts: [JSONValue] = config.serial.map { entry in
            let port: String
            switch entry.port {
            case .path(let p): port = p
            case let .usb(v, p, sn): port = "usb \(String(v, radix: 16))" + (p.map { ":" + String($0, radix: 16) } ?? "") + (sn.map { " serial \($0)" } ?? "")
            }
            let st = sources.first { $0.sourceID == entry.id }?.sourceStatus
            return .obj(["id": .string(entry.id), "profile": .string(entry.profile.rawValue), "port": .string(port),
                         "connected": .bool(live != nil && (st?.connected ?? false)), "detail": .opt(st?.detail)])
        }
        return .obj([
            "gateway_id": .string(config.gateway.id), "version": .string(Agent.version), "daemon": .bool(live != nil),
            "broker": .object(broker),
            "buffer": bufferJSON(stats, pending: pending),
            "readings_lost": .int(Int64(bitPattern: stats?.totalLost ?? 0)),
            "sources": devicesFromStatus,
            "registry": .obj(["devices": .int(Int64(registry.list().count)), "path": .string(registry.path),
                              "recovered": .opt(registry.recoveredFromCorruption?.description)]),
            "bluetooth_adapter": adapter,
            "bluetooth": .string(bluetooth == nil ? BluetoothNotConfigured.message : "configured"),
            "serial_ports": .array(serialPorts),
            "control_socket": .string(config.control.socket),
        ])
    }

    /// The patient each configured (simulated or serial) device's readings carry by default.
    var configuredPatients: [String: (patient: String, profile: String, transport: String)] {
        var out: [String: (String, String, String)] = [:]
        for s in config.simulators { out[s.id] = (s.patient, s.profile.rawValue, "simulated") }
        for s in config.serial { out[s.id] = (s.patient, s.profile.rawValue, "serial") }
        return out
    }

    func devices() async -> JSONValue {
        let pending = (try? await buffer.pendingReadingCounts()) ?? [:]
        let lost = await buffer.lostTotals()
        let lastReadings = await live?.ingestor.lastReadingAt ?? [:]
        let links = await bluetooth?.linkStates() ?? [:]
        let registered = registry.list()
        let configured = configuredPatients
        var rows: [JSONValue] = []
        var ids = Set<String>()
        func row(id: String, patient: String, profile: String, transport: String, entry: RegisteredDevice?, origin: String) -> JSONValue {
            let source = sources.first { $0.sourceID == id }?.sourceStatus
            let link = links[id]
            let linkText: String
            if live == nil { linkText = "agent not running" } else if let link { linkText = link.detail ?? (link.connected ? "connected" : "disconnected") } else if let source { linkText = source.detail ?? (source.connected ? "connected" : "disconnected") } else { linkText = "unknown" }
            return .obj([
                "id": .string(id), "patient_id": .string(patient), "profile": .string(profile), "transport": .string(transport),
                "address": .opt(entry?.address), "display_name": .opt(entry?.displayName), "serial_number": .opt(entry?.serialNumber),
                "manufacturer": .opt(entry?.manufacturer), "model": .opt(entry?.model), "firmware": .opt(entry?.firmware),
                "paired_at": .opt(entry?.pairedAt?.rfc3339), "bound_at": .opt(entry?.boundAt.rfc3339),
                "battery": link?.battery.map { .int(Int64($0)) } ?? .null,
                "connected": .bool(live != nil && (link?.connected ?? source?.connected ?? false)),
                "link": .string(linkText),
                "last_reading_at": .opt(lastReadings[id]?.rfc3339),
                "buffered": .int(Int64(pending[id] ?? 0)), "lost": .int(Int64(bitPattern: lost[id] ?? 0)),
                "binding": .string(origin),
            ])
        }
        for e in registered {
            ids.insert(e.id)
            rows.append(row(id: e.id, patient: e.patientID, profile: e.profile, transport: e.transport, entry: e,
                            origin: configured[e.id] == nil ? "registry" : "registry (overrides agent.yaml)"))
        }
        for (id, c) in configured.sorted(by: { $0.key < $1.key }) where !ids.contains(id) {
            rows.append(row(id: id, patient: c.patient, profile: c.profile, transport: c.transport, entry: nil, origin: "agent.yaml"))
        }
        return .obj(["devices": .array(rows)])
    }

    // MARK: binding

    func assign(device: String, patient: String, actor: AuditActor) async throws -> JSONValue {
        do { try DeviceRegistry.validate(id: patient, field: "patient") } catch { throw ControlError(.invalidArgument, error.description) }
        let now = clock.now()
        let before: String
        let entry: RegisteredDevice
        do {
            if registry.device(id: device) != nil {
                (before, entry) = try registry.assign(deviceID: device, patientID: patient, at: now)
            } else if let c = configuredPatients[device] {
                // A configured device: the registry entry overrides its agent.yaml patient.
                before = c.patient
                entry = RegisteredDevice(id: device, transport: c.transport, profile: c.profile, patientID: patient, boundAt: now)
                try registry.add(entry)
            } else if let e = registry.device(address: device) {
                (before, entry) = try registry.assign(deviceID: e.id, patientID: patient, at: now)
            } else {
                throw ControlError(.notFound, "no device \(device): see `iomt-agent devices`")
            }
        } catch let e as RegistryError {
            throw ControlError(.internalError, e.description)
        }
        try await record(.assign, device: entry.id, before: before, after: patient, actor: actor)
        return .obj(["device": .string(entry.id), "patient_before": .string(before), "patient_after": .string(patient)])
    }

    func record(_ action: AuditEvent.Action, device: String?, before: String?, after: String?, actor: AuditActor,
                outcome: String = "ok", detail: String? = nil) async throws {
        let event = audit.log.event(action, deviceID: device, patientBefore: before, patientAfter: after, actor: actor,
                                    outcome: outcome, detail: detail)
        do {
            try await audit.record(event)
        } catch {
            throw ControlError(.internalError, "the change was made but the audit log could not be written: \(error)")
        }
    }

    func discharge(_ a: JSONValue, actor: AuditActor) async throws -> JSONValue {
        let deviceArg = try Self.optionalText(a, "device")
        let patientArg = try Self.optionalText(a, "patient")
        let force = a["force"]?.boolValue ?? false
        let reason = try Self.optionalText(a, "reason")
        if force, (reason ?? "").trimmingCharacters(in: " ").isEmpty {
            throw ControlError(.invalidArgument, "--force needs --reason TEXT (it is written to the audit log)")
        }
        var targets: [RegisteredDevice]
        switch (deviceArg, patientArg) {
        case (let d?, nil):
            guard let e = registry.device(id: d) ?? registry.device(address: d) else {
                if configuredPatients[d] != nil {
                    throw ControlError(.refused, "\(d) is bound in agent.yaml, not by pairing: change or remove its entry there (or `assign` it to another patient)")
                }
                throw ControlError(.notFound, "no paired device \(d): see `iomt-agent devices`")
            }
            targets = [e]
        case (nil, let p?):
            targets = registry.devices(patient: p)
            guard !targets.isEmpty else { throw ControlError(.notFound, "no paired device is bound to patient \(p)") }
        default:
            throw ControlError(.invalidArgument, "give either device or patient")
        }
        let ids = Set(targets.map(\.id))
        var pending = try await buffer.pendingReadingCounts().filter { ids.contains($0.key) }
        if pending.values.reduce(0, +) > 0, !force, a["exported"] == nil, let forwarder = live?.forwarder,
           await forwarder.isConnected {
            // A device that is still on streams while the nurse discharges: give what it sent a
            // moment to be delivered (the forwarder reports idle: buffer empty, nothing in flight),
            // at most 5 s, then look again.
            // (Not a task group: it would wait for the idle waiter, which a stream that never
            // pauses never resumes. The waiter is left to finish at the next idle moment.)
            let (first, done) = AsyncStream.makeStream(of: Void.self)
            let idle = Task { await forwarder.waitUntilIdle(); done.yield() }
            let timer = Task { try? await Task.sleep(for: .seconds(5)); done.yield() }
            for await _ in first { break }
            timer.cancel()
            _ = idle
            pending = try await buffer.pendingReadingCounts().filter { ids.contains($0.key) }
        }
        let buffered = pending.values.reduce(0, +)
        var note: String?
        if buffered > 0 {
            if let exported = a["exported"], let through = exported["through_row"]?.intValue {
                let newer = try await buffer.pending(after: through, limit: 1, deviceIDs: ids)
                guard newer.isEmpty else {
                    throw ControlError(.refused, "readings arrived after the export; export again")
                }
                note = "\(buffered) buffered reading(s) exported to \(exported["file"]?.stringValue ?? "a file") before discharge; they are still delivered"
            } else if force {
                note = "forced with \(buffered) reading(s) still buffered: \(reason ?? "")"
            } else {
                for t in targets {
                    try await record(.discharge, device: t.id, before: t.patientID, after: nil, actor: actor, outcome: "refused",
                                     detail: "\(pending[t.id] ?? 0) reading(s) still buffered")
                }
                throw ControlError(.refused, "\(buffered) reading(s) of \(targets.map(\.patientID).uniqued().joined(separator: ", ")) are still buffered (not yet delivered to the broker): wait for delivery, export them with --export FILE, or use --force --reason TEXT")
            }
        }
        var results: [JSONValue] = []
        for t in targets {
            do { try registry.remove(deviceID: t.id) } catch { throw ControlError(.internalError, error.description) }
            var bond = "none"
            if t.transport == "ble" {
                if let bluetooth {
                    do {
                        try await bluetooth.forget(deviceID: t.id)
                        bond = "deleted"
                    } catch {
                        bond = "not deleted: \(error)"
                    }
                } else {
                    bond = "not deleted: \(BluetoothNotConfigured.message)"
                }
            }
            try await record(.discharge, device: t.id, before: t.patientID, after: nil, actor: actor,
                             detail: [note, "bond \(bond)"].compactMap { $0 }.joined(separator: "; "))
            results.append(.obj(["device": .string(t.id), "patient_id": .string(t.patientID), "bond": .string(bond),
                                 "buffered": .int(Int64(pending[t.id] ?? 0))]))
        }
        return .obj(["discharged": .array(results), "note": .opt(note)])
    }

    // MARK: buffer

    func bufferStats() async throws -> JSONValue {
        let stats: BufferStats
        do { stats = try await buffer.stats() } catch { throw ControlError(.internalError, "\(error)") }
        let pending = (try? await buffer.pendingReadingCounts()) ?? [:]
        return bufferJSON(stats, pending: pending)
    }

    /// One page of stored messages (nothing is deleted). The CLI writes them to the file. The
    /// first page (`after` 0) fixes `until`, the newest row at that moment, which the CLI passes
    /// back: an export is a snapshot and does not chase messages stored while it runs (its own
    /// audit event among them).
    func export(_ a: JSONValue, actor: AuditActor) async throws -> JSONValue {
        let after = try Self.int(a, "after", default: 0, range: 0...Int64.max)
        let limit = try Self.int(a, "limit", default: 500, range: 1...5000)
        let devices = a["devices"]?.arrayValue.map { Set($0.compactMap(\.stringValue)) }
        let until: Int64
        if let u = a["until"]?.intValue { until = u } else { until = await buffer.maxRowID() }
        var rows: [StoredMessage]
        do { rows = try await buffer.pending(after: after, limit: Int(limit), deviceIDs: devices) } catch { throw ControlError(.internalError, "\(error)") }
        let complete = rows.count < Int(limit) || rows.contains { if case .message(let id) = $0.token { id > until } else { false } }
        rows.removeAll { if case .message(let id) = $0.token { id > until } else { false } }
        if after == 0, let file = try Self.optionalText(a, "file") {
            try await record(.bufferExport, device: devices.map { $0.sorted().joined(separator: ",") }, before: nil, after: nil,
                             actor: actor, detail: "export to \(file) started")
        }
        var lastRow: Int64?
        let lines: [JSONValue] = rows.map { r in
            if case .message(let id) = r.token { lastRow = id }
            return Self.exportLine(r)
        }
        return .obj(["rows": .array(lines), "until": .int(until),
                     "next_after": complete ? .null : lastRow.map { .int($0) } ?? .null])
    }

    /// One line of a `buffer export` file: the stored message with its payload embedded as JSON
    /// (as a string if it is not JSON).
    static func exportLine(_ r: StoredMessage) -> JSONValue {
        let m = r.message
        var row: Int64 = 0
        if case .message(let id) = r.token { row = id }
        let payload = (try? JSONValue.parse(m.payload)) ?? .string(String(decoding: m.payload, as: UTF8.self))
        return .obj([
            "row": .int(row), "id": .string(m.id.description), "kind": .string(Forwarder.kindName(m.kind)), "topic": .string(m.topic),
            "device_id": .opt(m.deviceID), "sequence": m.sequence.map { .int(Int64(bitPattern: $0)) } ?? .null,
            "created_at": .string(m.createdAt.rfc3339), "payload": payload,
        ])
    }

    func purge(_ a: JSONValue, actor: AuditActor) async throws -> JSONValue {
        guard a["confirm"]?.boolValue == true else {
            throw ControlError(.invalidArgument, "purge deletes every buffered reading; repeat with --confirm")
        }
        let outcome: PurgeOutcome
        do { outcome = try await buffer.purgeReadings(reason: .purgedByOperator) } catch { throw ControlError(.internalError, "\(error)") }
        audit.onStored() // gap records to publish
        try await record(.bufferPurge, device: nil, before: nil, after: nil, actor: actor,
                         detail: "\(outcome.purged) reading(s) deleted and counted as lost; \(outcome.leftInFlight) in flight left to finish")
        return .obj(["purged": .int(Int64(outcome.purged)), "left_in_flight": .int(Int64(outcome.leftInFlight)),
                     "devices": .array(Set(outcome.losses.map(\.deviceID)).sorted().map { .string($0) })])
    }

    // MARK: Bluetooth

    func requireBluetooth() throws -> any BluetoothControl {
        guard let bluetooth else { throw ControlError(.unavailable, BluetoothNotConfigured.message) }
        return bluetooth
    }

    func scan(_ a: JSONValue, session: ControlSession?) async throws -> JSONValue {
        let bluetooth = try requireBluetooth()
        let seconds = try Self.int(a, "seconds", default: 10, range: 1...300)
        let paired = Set(registry.list().compactMap(\.address).map { $0.uppercased() })
        let counter = Counter()
        do {
            try await bluetooth.scan(seconds: Int(seconds)) { row in
                var r = row
                r.paired = r.paired || paired.contains(r.address.uppercased())
                counter.increment()
                session?.event(r.json)
            }
        } catch let e as BluetoothControlError {
            throw ControlError(e.code, e.message)
        }
        return .obj(["seen": .int(Int64(counter.value))])
    }

    func pair(_ a: JSONValue, actor: AuditActor, session: ControlSession?) async throws -> JSONValue {
        let bluetooth = try requireBluetooth()
        let address = try Self.text(a, "address")
        let patient = try Self.text(a, "patient")
        do { try DeviceRegistry.validate(id: patient, field: "patient") } catch { throw ControlError(.invalidArgument, error.description) }
        guard let id = RegisteredDevice.bleID(address: address) else {
            throw ControlError(.invalidArgument, "address must look like AA:BB:CC:DD:EE:FF, got \(address)")
        }
        let profile = try Self.optionalText(a, "profile")
        let fixed = a["passkey"]?.intValue
        let prompt = PasskeyPrompt { question in
            switch question {
            case .enterPasskey:
                if let fixed { return .passkey(UInt32(clamping: fixed)) }
                guard let session else { throw ControlError(.invalidArgument, "the device asks for a passkey: give --passkey") }
                let v = try await session.prompt(kind: "passkey", text: "Enter the 6-digit passkey shown on the device")
                guard let n = v.intValue ?? v.stringValue.flatMap({ Int64($0) }), (0...999_999).contains(n) else {
                    throw ControlError(.invalidArgument, "a passkey is 6 digits")
                }
                return .passkey(UInt32(n))
            case .confirmNumber(let n):
                guard let session else { return .confirmed(fixed.map { $0 == Int64(n) } ?? false) }
                let v = try await session.prompt(kind: "confirm", text: "Does the device show \(Self.sixDigits(n))? (yes/no)")
                return .confirmed(v.boolValue ?? false)
            case .displayPasskey(let n):
                session?.event(.obj(["display_passkey": .string(Self.sixDigits(n)), "text": .string("Type \(Self.sixDigits(n)) on the device")]))
                return .confirmed(true)
            }
        }
        session?.event(.obj(["stage": .string("pairing"), "address": .string(address)]))
        let paired: PairedDevice
        do {
            paired = try await bluetooth.pair(address: address, patient: patient, profile: profile, passkey: prompt)
        } catch {
            let failure: ControlError
            switch error {
            case let e as BluetoothControlError: failure = ControlError(e.code, e.message)
            case let e as ControlError: failure = e
            default: failure = ControlError(.pairingFailed, "pairing failed: \(error)")
            }
            try? await record(.pair, device: id, before: nil, after: patient, actor: actor, outcome: "failed", detail: failure.message)
            throw failure
        }
        let now = clock.now()
        let entryID = RegisteredDevice.bleID(address: paired.address) ?? id
        let previous = registry.device(id: entryID)
        let entry = RegisteredDevice(id: entryID, transport: "ble", address: paired.address, addressType: paired.addressType,
                                     profile: paired.profile, patientID: patient, displayName: paired.name,
                                     manufacturer: paired.manufacturer, model: paired.model, serialNumber: paired.serialNumber,
                                     firmware: paired.firmware, pairedAt: now, boundAt: now)
        do { try registry.add(entry) } catch { throw ControlError(.internalError, error.description) }
        try await record(.pair, device: entryID, before: previous?.patientID, after: patient, actor: actor,
                         detail: "profile \(paired.profile)")
        var result = entry.json
        if case .object(var m) = result {
            m.append(.init("first_reading_at", .opt(paired.firstReadingAt?.rfc3339)))
            result = .object(m)
        }
        return result
    }

    static func sixDigits(_ n: UInt32) -> String {
        let s = String(n)
        return String(repeating: "0", count: max(0, 6 - s.count)) + s
    }
}

final class Counter: Sendable {
    private let n = Mutex(0)
    func increment() { n.withLock { $0 += 1 } }
    var value: Int { n.withLock { $0 } }
}

extension Array where Element: Hashable {
    func uniqued() -> [Element] {
        var seen = Set<Element>()
        return filter { seen.insert($0).inserted }
    }
}

extension String {
    func trimmingCharacters(in c: Character) -> String {
        var s = Substring(self)
        while s.first == c { s = s.dropFirst() }
        while s.last == c { s = s.dropLast() }
        return String(s)
    }
}

extension ControlService {
    /// `alerts`: the active alerts, from the running service or, without a daemon, from
    /// `state_dir/alerts.json` as the last run left it. Local: patients by their configured id.
    func activeAlerts() async throws(ControlError) -> JSONValue {
        let list: [Alert]
        if let alerts {
            list = await alerts.active
        } else {
            do {
                list = try AlertService.load(path: AlertService.statePath(stateDir: config.stateDir))
            } catch {
                throw ControlError(.unavailable, "cannot read the active alerts: \(error)")
            }
        }
        var doc = AlertFormat.listJSON(list, patientReference: { $0 })
        if case .object(var members) = doc {
            members.append(.init("enabled", .bool(config.alerts.enabled)))
            members.append(.init("daemon", .bool(live != nil)))
            doc = .object(members)
        }
        return doc
    }
}
