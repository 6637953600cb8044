import IoMTATT
import IoMTCore
import IoMTHCI
import IoMTHealthProfiles
import Logging

/// One glucose record as the download delivers it: the measurement and, when the meter flagged
/// one as following (Glucose Measurement flags bit 4), the context with the same sequence number.
/// Glucose Service 1.0 §3.6 (a context follows its measurement), reference §6.1, §6.2, §13.14.
public struct GlucoseRecord: Sendable, Hashable {
    public var measurement: GlucoseMeasurement
    public var context: GlucoseMeasurementContext?
    /// The context was flagged as following but never came (its wait ran out, or the next
    /// measurement or the RACP response arrived first).
    public var contextMissing: Bool
    public var sequenceNumber: UInt16 { measurement.sequenceNumber }

    public init(measurement: GlucoseMeasurement, context: GlucoseMeasurementContext? = nil, contextMissing: Bool = false) {
        self.measurement = measurement
        self.context = context
        self.contextMissing = contextMissing
    }

    /// The measurement normalized, with the context's statuses (meal, tester, health).
    public var normalized: DecodedMeasurement {
        var m = measurement.normalized
        if let context {
            m.statuses.removeAll { $0 == "context-follows" }
            m.statuses += context.statuses
        } else if contextMissing {
            m.statuses.append("context-missing")
        }
        return m
    }
}

/// The per-device download cursor the buffer keeps (`DeviceReading.sourceCursor`): the highest
/// glucose sequence number accepted, stored in the same transaction as that reading.
/// Text form (version 1): `glucose/1 <sequence>`.
public enum GlucoseCursor {
    public static func encode(_ sequence: UInt16) -> String { "glucose/1 \(sequence)" }

    /// The sequence number, or nil for anything else (then every record is downloaded again).
    public static func decode(_ text: String?) -> UInt16? {
        guard let text, text.hasPrefix("glucose/1 ") else { return nil }
        return UInt16(text.dropFirst("glucose/1 ".count))
    }
}

/// Downloading a glucose meter's stored records with the Record Access Control Point, then
/// staying live for new measurements: a pure state machine (no I/O; time is an input).
///
/// Glucose Service 1.0 §3.9 and GSS Record Access Control Point; reference §6.3–§6.4:
/// write `01 03 01 <last+1>` (all records `01 01` when nothing is stored yet), receive the
/// records as measurement (+ context) notifications, finish on the RACP indication
/// `06 00 01 01` (success) or `06 00 01 06` (no records found: nothing new, not an error).
/// ATT errors on the RACP write come in the old (GLS 1.0: 0x80 procedure already in progress,
/// 0x81 CCCD improperly configured) and the new (0xFE, 0xFD) forms; both are handled
/// (`RACP.WriteError`). A record at or below the stored sequence number is a duplicate and
/// is dropped. A meter that refuses the "greater than or equal" filter is asked for all records
/// once (the duplicates are then dropped here).
public struct GlucoseDownload: Sendable {
    public struct Options: Sendable, Hashable {
        /// How long the RACP may stay silent (no record, no response) while a request is open.
        public var responseTimeoutMs: UInt64 = 10_000
        /// How long to wait for a context flagged as following before delivering without it.
        public var contextTimeoutMs: UInt64 = 1_000
        /// RACP writes refused with "procedure already in progress" (abort, then ask again).
        public var maxBusyRetries = 3
        /// Before asking again after "server busy" (RACP response 0x0A).
        public var busyRetryDelayMs: UInt64 = 500
        public init() {}
    }

    public enum Input: Sendable, Hashable {
        /// A Glucose Measurement 0x2A18 notification.
        case measurement([UInt8])
        /// A Glucose Measurement Context 0x2A34 notification.
        case context([UInt8])
        /// An RACP 0x2A52 indication.
        case racp([UInt8])
        /// The last `writeRACP` was acknowledged (ATT Write Response).
        case writeSucceeded
        /// The last `writeRACP` was refused with this ATT error code.
        case writeFailed(attError: UInt8)
        /// Time passed (`nextDeadline` reached).
        case tick
    }

    public enum Action: Sendable, Hashable {
        /// Write the RACP CCCD again (indications), before the write that follows.
        case subscribeRACP
        /// Write this to the RACP (ATT Write Request).
        case writeRACP([UInt8])
        /// A record for the gateway.
        case deliver(GlucoseRecord)
        /// A line for the log.
        case log(Logger.Level, String)
        /// The download ended (records delivered during it); new records are delivered live.
        case downloadFinished(records: Int)
        /// The download failed; the link should end (the next connection asks again from the cursor).
        case failed(String)
    }

    public enum Phase: Sendable, Hashable {
        case idle
        /// The request is written; waiting for records and the response.
        case downloading
        /// "Procedure already in progress": abort written, then the request again.
        case aborting
        /// "Server busy": asking again at `retryAt`.
        case waitingToRetry
        /// Download over; measurements notified from now on are new ones.
        case live
        case failed
    }

    public let options: Options
    public private(set) var phase: Phase = .idle
    /// Records at or below this sequence number are duplicates (the stored cursor, then the
    /// highest delivered).
    public private(set) var floor: UInt16?
    /// The request being served (kept to repeat it).
    public private(set) var request: [UInt8] = []
    public private(set) var delivered = 0
    public private(set) var duplicates = 0
    public private(set) var malformed = 0
    private var deliveredInDownload = 0
    private var fellBackToAll = false
    private var busyRetries = 0
    private var resubscribed = false
    private var pending: (measurement: GlucoseMeasurement, deadline: UInt64)?
    private var responseDeadline: UInt64?
    private var retryAt: UInt64?

    public init(options: Options = Options()) {
        self.options = options
    }

    /// The earliest time `tick` has something to do.
    public var nextDeadline: UInt64? {
        [pending?.deadline, responseDeadline, retryAt].compactMap { $0 }.min()
    }

    /// Starts the download after the subscriptions: records newer than `lastStored` (all when nil).
    public mutating func start(lastStored: UInt16?, now: UInt64) -> [Action] {
        // After 0xFFFF there is no "next" number: everything is asked for and nothing is dropped.
        floor = lastStored == UInt16.max ? nil : lastStored
        request = RACP.incrementalRequest(lastStoredSequence: lastStored)
        phase = .downloading
        responseDeadline = now + options.responseTimeoutMs
        let what = lastStored.map { $0 == UInt16.max ? "all records (sequence wrapped)" : "records from sequence \($0 &+ 1)" } ?? "all records"
        return [.log(.info, "asking the glucose meter for \(what)"), .writeRACP(request)]
    }

    public mutating func receive(_ input: Input, now: UInt64) -> [Action] {
        switch input {
        case .measurement(let bytes):
            return measurement(bytes, now: now)
        case .context(let bytes):
            return context(bytes)
        case .racp(let bytes):
            return racp(bytes, now: now)
        case .writeSucceeded:
            return []
        case .writeFailed(let code):
            return writeFailed(code, now: now)
        case .tick:
            return tick(now: now)
        }
    }

    // MARK: - Records

    private mutating func measurement(_ bytes: [UInt8], now: UInt64) -> [Action] {
        var out = flushPending(missing: true)
        let m: GlucoseMeasurement
        do {
            m = try GlucoseMeasurement.decode(bytes)
        } catch {
            malformed += 1
            return out + [.log(.warning, "malformed glucose measurement dropped: \(error)")]
        }
        if isOpen { responseDeadline = now + options.responseTimeoutMs }
        if let floor, m.sequenceNumber <= floor {
            duplicates += 1
            return out + [.log(.info, "glucose record \(m.sequenceNumber) already stored (at or below \(floor)); dropped")]
        }
        if m.contextFollows {
            pending = (m, now + options.contextTimeoutMs)
        } else {
            out += deliver(GlucoseRecord(measurement: m))
        }
        return out
    }

    private mutating func context(_ bytes: [UInt8]) -> [Action] {
        let c: GlucoseMeasurementContext
        do {
            c = try GlucoseMeasurementContext.decode(bytes)
        } catch {
            malformed += 1
            return [.log(.warning, "malformed glucose measurement context dropped: \(error)")]
        }
        guard let p = pending, p.measurement.sequenceNumber == c.sequenceNumber else {
            return [.log(.info, "glucose context for sequence \(c.sequenceNumber) matches no waiting measurement; ignored")]
        }
        pending = nil
        return deliver(GlucoseRecord(measurement: p.measurement, context: c))
    }

    private mutating func flushPending(missing: Bool) -> [Action] {
        guard let p = pending else { return [] }
        pending = nil
        return [.log(.info, "glucose record \(p.measurement.sequenceNumber) flagged a context that did not come; delivered without it")]
            + deliver(GlucoseRecord(measurement: p.measurement, contextMissing: missing))
    }

    private mutating func deliver(_ record: GlucoseRecord) -> [Action] {
        floor = max(floor ?? 0, record.sequenceNumber)
        delivered += 1
        if isOpen { deliveredInDownload += 1 }
        return [.deliver(record)]
    }

    private var isOpen: Bool { phase == .downloading || phase == .aborting || phase == .waitingToRetry }

    // MARK: - RACP responses

    private mutating func racp(_ bytes: [UInt8], now: UInt64) -> [Action] {
        let response: RACP.Response
        do {
            response = try RACP.decodeResponse(bytes)
        } catch {
            malformed += 1
            return [.log(.warning, "malformed RACP indication ignored: \(error)")]
        }
        switch (phase, response) {
        case (.downloading, .responseCode(.reportStoredRecords, let value)):
            return reportAnswered(value, now: now)
        case (.aborting, .responseCode(.abortOperation, let value)):
            // Whatever the abort's outcome, ask again (the retry count bounds this).
            phase = .downloading
            responseDeadline = now + options.responseTimeoutMs
            return [.log(.info, "RACP abort answered (\(describe(value))); asking again"), .writeRACP(request)]
        case (_, .numberOfRecords(let n)):
            return [.log(.info, "the glucose meter reports \(n) stored records")]
        default:
            return [.log(.info, "unexpected RACP indication \(hex(bytes)) ignored (\(phase))")]
        }
    }

    private mutating func reportAnswered(_ value: RACP.ResponseValue, now: UInt64) -> [Action] {
        var out = flushPending(missing: true)
        switch value {
        case .success, .noRecordsFound:
            let n = deliveredInDownload
            phase = .live
            responseDeadline = nil
            deliveredInDownload = 0
            out.append(.log(.info, value == .success ? "glucose download complete: \(n) new records"
                                                     : "glucose meter has no new records"))
            out.append(.downloadFinished(records: n))
            return out
        case let v where Self.filterRefusals.contains(v) && !fellBackToAll && request != RACP.reportAllRecords():
            fellBackToAll = true
            request = RACP.reportAllRecords()
            responseDeadline = now + options.responseTimeoutMs
            out.append(.log(.warning, "the glucose meter refused the sequence-number filter (\(describe(value))); asking for all records (duplicates are dropped)"))
            out.append(.writeRACP(request))
            return out
        case .serverBusy where busyRetries < options.maxBusyRetries:
            busyRetries += 1
            phase = .waitingToRetry
            responseDeadline = nil
            retryAt = now + options.busyRetryDelayMs
            out.append(.log(.info, "the glucose meter is busy; asking again shortly"))
            return out
        default:
            return out + fail("the glucose meter answered the record request with \(describe(value))")
        }
    }

    /// Response values by which a meter may refuse the "greater than or equal" sequence filter.
    static let filterRefusals: Set<RACP.ResponseValue> = [
        .opCodeNotSupported, .invalidOperator, .operatorNotSupported, .invalidOperand, .operandNotSupported,
    ]

    private mutating func writeFailed(_ code: UInt8, now: UInt64) -> [Action] {
        let error = RACP.WriteError(attErrorCode: code)
        let codeText = "ATT error 0x" + hex([code])
        switch (phase, error) {
        case (.downloading, .procedureAlreadyInProgress) where busyRetries < options.maxBusyRetries:
            busyRetries += 1
            phase = .aborting
            responseDeadline = now + options.responseTimeoutMs
            return [.log(.info, "the glucose meter has an RACP procedure in progress (\(codeText)); aborting it"),
                    .writeRACP(RACP.abort())]
        case (.downloading, .cccdImproperlyConfigured) where !resubscribed:
            resubscribed = true
            responseDeadline = now + options.responseTimeoutMs
            return [.log(.warning, "the glucose meter says the RACP indications are not enabled (\(codeText)); subscribing again"),
                    .subscribeRACP, .writeRACP(request)]
        case (_, .insufficientSecurity):
            return fail("the glucose meter requires an encrypted link for its records (\(codeText)): pair it")
        case (_, .procedureAlreadyInProgress):
            return fail("the glucose meter stays busy with another RACP procedure (\(codeText))")
        case (_, .cccdImproperlyConfigured):
            return fail("the glucose meter refuses the RACP write: indications not enabled (\(codeText))")
        default:
            return fail("the glucose meter refused the RACP write (\(codeText))")
        }
    }

    private mutating func tick(now: UInt64) -> [Action] {
        var out: [Action] = []
        if let p = pending, now >= p.deadline { out += flushPending(missing: true) }
        if let r = retryAt, now >= r {
            retryAt = nil
            phase = .downloading
            responseDeadline = now + options.responseTimeoutMs
            out.append(.writeRACP(request))
        }
        if let d = responseDeadline, now >= d {
            out += fail("no RACP response from the glucose meter within \(options.responseTimeoutMs) ms")
        }
        return out
    }

    private mutating func fail(_ reason: String) -> [Action] {
        phase = .failed
        responseDeadline = nil
        retryAt = nil
        return [.log(.error, reason), .failed(reason)]
    }

    private func describe(_ v: RACP.ResponseValue) -> String {
        let names: [UInt8: String] = [
            0x01: "success", 0x02: "op code not supported", 0x03: "invalid operator", 0x04: "operator not supported",
            0x05: "invalid operand", 0x06: "no records found", 0x07: "abort unsuccessful", 0x08: "procedure not completed",
            0x09: "operand not supported", 0x0A: "server busy",
        ]
        return "\(names[v.rawValue] ?? "response code") 0x\(hex([v.rawValue]))"
    }

    private func hex(_ bytes: [UInt8]) -> String { bytes.map(hex2).joined(separator: " ") }
}

// MARK: - The driver over a live link

/// What the glucose downloads of one device did since the service started (for the status and tests).
public struct GlucoseStats: Sendable, Hashable {
    /// Downloads that ended with "success" or "no records found".
    public var downloadsFinished = 0
    /// Records the last finished download delivered (0 after "no records found").
    public var lastDownloadRecords = 0
    /// Records handed to the gateway (downloaded or live), with their context, without the
    /// context they flagged, and dropped as already stored.
    public var recordsDelivered = 0
    public var recordsWithContext = 0
    public var contextsMissing = 0
    public var duplicatesDropped = 0
    public var lastFailure: String?
    public init() {}
}

/// The glucose side of a `BluetoothService`: per-device stats and whoever waits on them.
struct GlucoseBook: Sendable {
    var stats: [String: GlucoseStats] = [:]
    var waiters: [(id: Int, device: String, downloads: Int, continuation: CheckedContinuation<GlucoseStats?, Never>)] = []
    var nextID = 0
}

/// What the glucose driver waits on: the link's events and its own deadline.
private enum GlucoseDriverInput: Sendable {
    case link(LinkEvent)
    case tick
}

extension BluetoothService {
    /// One connection to a glucose meter (the `glucose` profile's branch of `runLink`): subscribe
    /// to measurements, contexts and the RACP (indications), download the records newer than the
    /// device's cursor, deliver each as a reading whose `sourceCursor` is its sequence number
    /// (the buffer stores it in the same transaction), then stay live for new measurements until
    /// the link ends. Returns why it ended (for the status line).
    func runGlucose(_ device: BLEDevice, _ link: LELink, service: GATTService, characteristics chars: [GATTCharacteristic],
                    hasBond: Bool, options: GlucoseDownload.Options = GlucoseDownload.Options()) async throws(LinkError) -> String {
        let meta: Logger.Metadata = ["device": "\(device.id)"]
        func find(_ uuid: UInt16) -> (GATTCharacteristic, end: UInt16)? {
            guard let i = chars.firstIndex(where: { $0.uuid == BluetoothUUID(uuid) }) else { return nil }
            // A hostile declaration handle 0 must not trap: the range then runs to the end.
            return (chars[i], i + 1 < chars.count ? chars[i + 1].declarationHandle &- 1 : service.end)
        }
        func cccd(_ c: GATTCharacteristic, end: UInt16) async throws(LinkError) -> UInt16? {
            guard c.valueHandle < end,
                  case .descriptors(let ds) = try await link.gattRequest(.discoverDescriptors(start: c.valueHandle + 1, end: end))
            else { return nil }
            return ds.first(where: { $0.uuid == BluetoothUUID(0x2902) })?.handle
        }
        guard let (gm, gmEnd) = find(0x2A18), let gmCCCD = try await cccd(gm, end: gmEnd) else {
            logger.error("glucose meter without a subscribable Glucose Measurement 0x2A18", metadata: meta)
            return "no glucose measurement characteristic"
        }
        guard let (racp, racpEnd) = find(0x2A52), let racpCCCD = try await cccd(racp, end: racpEnd) else {
            logger.error("glucose meter without a Record Access Control Point 0x2A52 with indications", metadata: meta)
            return "no record access control point"
        }
        var gmcHandle: UInt16?
        var gmcCCCD: UInt16?
        if let (gmc, gmcEnd) = find(0x2A34) {
            gmcHandle = gmc.valueHandle
            gmcCCCD = try await cccd(gmc, end: gmcEnd)
        }
        if let (feature, _) = find(0x2A51), case .value(let v)? = try? await link.gattRequest(.read(handle: feature.valueHandle)),
           let f = try? GlucoseFeature.decode(v) {
            logger.debug("glucose feature", metadata: meta.merging(["feature": "0x\(String(f.rawValue, radix: 16))"]) { a, _ in a })
        }
        // Subscriptions: measurement and context notified, RACP indicated (reference §6.4 step 2).
        do {
            _ = try await link.gattRequest(.subscribe(cccdHandle: gmCCCD, indications: false))
            if let gmcCCCD { _ = try await link.gattRequest(.subscribe(cccdHandle: gmcCCCD, indications: false)) }
            _ = try await link.gattRequest(.subscribe(cccdHandle: racpCCCD, indications: true))
        } catch {
            if !hasBond, Self.needsSecurity(error) {
                logger.error("the glucose meter requires pairing before it sends records: run `iomt-agent pair`", metadata: meta)
                return "needs pairing"
            }
            throw error
        }
        logger.info("subscribed to the glucose meter", metadata: meta)

        // Link events and the machine's deadline, in one stream.
        let (inputs, feed) = AsyncStream.makeStream(of: GlucoseDriverInput.self)
        let forward = Task {
            for await e in link.events { feed.yield(.link(e)) }
            feed.finish()
        }
        var timer = DeadlineTimer()
        defer {
            forward.cancel()
            timer.cancel()
            feed.finish()
        }
        var machine = GlucoseDownload(options: options)
        let lastStored = GlucoseCursor.decode(cursors[device.id])
        var queue = machine.start(lastStored: lastStored, now: hostNow())
        var next = inputs.makeAsyncIterator()
        var countedDuplicates = 0

        while true {
            // Carry out the machine's actions; a write's outcome is fed straight back.
            while !queue.isEmpty {
                let action = queue.removeFirst()
                switch action {
                case .subscribeRACP:
                    _ = try await link.gattRequest(.subscribe(cccdHandle: racpCCCD, indications: true))
                case .writeRACP(let bytes):
                    do {
                        _ = try await link.gattRequest(.write(handle: racp.valueHandle, value: bytes))
                        queue += machine.receive(.writeSucceeded, now: hostNow())
                    } catch .gatt(.att(let code, _)) {
                        queue += machine.receive(.writeFailed(attError: code.rawValue), now: hostNow())
                    }
                case .deliver(let record):
                    glucose.stats[device.id, default: GlucoseStats()].recordsDelivered += 1
                    if record.context != nil { glucose.stats[device.id, default: GlucoseStats()].recordsWithContext += 1 }
                    if record.contextMissing { glucose.stats[device.id, default: GlucoseStats()].contextsMissing += 1 }
                    await deliverGlucose(device, record)
                case .log(let level, let message):
                    logger.log(level: level, "\(message)", metadata: meta)
                case .downloadFinished(let n):
                    glucose.stats[device.id, default: GlucoseStats()].duplicatesDropped += machine.duplicates - countedDuplicates
                    countedDuplicates = machine.duplicates
                    glucose.stats[device.id, default: GlucoseStats()].lastDownloadRecords = n
                    glucose.stats[device.id, default: GlucoseStats()].downloadsFinished += 1
                    wakeGlucoseWaiters(device.id)
                case .failed(let reason):
                    glucose.stats[device.id, default: GlucoseStats()].lastFailure = reason
                    return "glucose download failed: \(reason)"
                }
            }
            glucose.stats[device.id, default: GlucoseStats()].duplicatesDropped += machine.duplicates - countedDuplicates
            countedDuplicates = machine.duplicates
            timer.arm(machine.nextDeadline, now: hostNow()) { feed.yield(.tick) }
            guard let input = await next.next() else { return "link ended" }
            switch input {
            case .tick:
                timer.fired()
                queue = machine.receive(.tick, now: hostNow())
            case .link(.notification(let handle, let value)), .link(.indication(let handle, let value)):
                if handle == gm.valueHandle {
                    queue = machine.receive(.measurement(value), now: hostNow())
                } else if handle == gmcHandle {
                    queue = machine.receive(.context(value), now: hostNow())
                } else if handle == racp.valueHandle {
                    queue = machine.receive(.racp(value), now: hostNow())
                }
            case .link(.securityRequested):
                if hasBond, let bond = try? bonds.bond(for: device.address.address) {
                    _ = try? await link.encrypt(ltk: bond.ltk, ediv: bond.ediv, rand: bond.rand)
                }
            case .link(.serviceChanged):
                logger.info("the device's services changed; reconnecting to rediscover", metadata: meta)
                return "services changed"
            case .link(.disconnected(let reason)):
                if machine.phase != .live {
                    logger.warning("glucose meter disconnected during the download; the next connection resumes from the last stored record",
                                   metadata: meta)
                }
                return "disconnected: \(reason)"
            }
        }
    }

    /// The glucose stats of `deviceID` once at least `downloads` downloads finished since the
    /// service started, or nil after `timeout`.
    public func glucoseDownloads(of deviceID: String, atLeast downloads: Int, timeout: Duration) async -> GlucoseStats? {
        if let s = glucose.stats[deviceID], s.downloadsFinished >= downloads { return s }
        let id = glucose.nextID
        glucose.nextID += 1
        let timer = Task {
            try? await Task.sleep(for: timeout)
            self.expireGlucoseWaiter(id)
        }
        defer { timer.cancel() }
        return await withCheckedContinuation { c in glucose.waiters.append((id, deviceID, downloads, c)) }
    }

    /// What the glucose downloads of `deviceID` did so far.
    public func glucoseStats(of deviceID: String) -> GlucoseStats? { glucose.stats[deviceID] }

    private func expireGlucoseWaiter(_ id: Int) {
        guard let i = glucose.waiters.firstIndex(where: { $0.id == id }) else { return }
        glucose.waiters.remove(at: i).continuation.resume(returning: nil)
    }

    private func wakeGlucoseWaiters(_ deviceID: String) {
        guard let s = glucose.stats[deviceID] else { return }
        let ready = glucose.waiters.filter { $0.device == deviceID && s.downloadsFinished >= $0.downloads }
        glucose.waiters.removeAll { $0.device == deviceID && s.downloadsFinished >= $0.downloads }
        for w in ready { w.continuation.resume(returning: s) }
    }

    /// One record as a reading whose cursor is its sequence number; the in-memory cursor moves
    /// when the buffer accepted it (or when it is not patient data, so it is not asked for again).
    private func deliverGlucose(_ device: BLEDevice, _ record: GlucoseRecord) async {
        let decoded = record.normalized
        let cursor = GlucoseCursor.encode(record.sequenceNumber)
        let accepted = await submitDecoded(device, profileName: "glucose", decoded, sourceCursor: cursor)
        guard accepted || !decoded.isPatientData else { return }
        if let stored = GlucoseCursor.decode(cursors[device.id]), stored > record.sequenceNumber { return }
        cursors[device.id] = cursor
    }
}
