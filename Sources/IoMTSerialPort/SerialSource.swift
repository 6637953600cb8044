import IoMTThreads
import IoMTCore
import IoMTSerial
import Logging
import Synchronization

/// A USB-serial medical device as a `ReadingSource`: a link thread (see `SerialLink`) does the
/// blocking I/O and decoding; this async side stamps, submits and reports status.
///
/// Timing: live streams get the gateway receipt time minus the reading's age (`gateway-receipt`);
/// stored records (OneTouch) get the device clock corrected by the offset measured when the
/// device reported its clock (`device-corrected`), or as-is (`device-unsynchronized`) if it did not.
public struct SerialSource: ReadingSource {
    public struct Configuration: Sendable {
        public var id: String
        public var patientID: String
        public var profile: SerialProfile
        public var port: PortSpec
        /// Overrides the profile's line settings (then no alternatives are tried).
        public var lineSettings: LineSettings?
        public var reconnectMinMilliseconds: Int64
        public var reconnectMaxMilliseconds: Int64
        /// The device's source cursor as the buffer stored it (`WatermarkCursor` text for
        /// OneTouch): where the record download resumes.
        public var storedCursor: String?
        public var sysfs: SysfsScanner

        public init(id: String, patientID: String, profile: SerialProfile, port: PortSpec, lineSettings: LineSettings? = nil,
                    reconnectMinMilliseconds: Int64 = 250, reconnectMaxMilliseconds: Int64 = 5000,
                    storedCursor: String? = nil, sysfs: SysfsScanner = SysfsScanner()) {
            self.id = id
            self.patientID = patientID
            self.profile = profile
            self.port = port
            self.lineSettings = lineSettings
            self.reconnectMinMilliseconds = reconnectMinMilliseconds
            self.reconnectMaxMilliseconds = reconnectMaxMilliseconds
            self.storedCursor = storedCursor
            self.sysfs = sysfs
        }
    }

    /// What the source is doing, for the status topic.
    public struct Status: Hashable, Sendable {
        public enum Link: Hashable, Sendable {
            case starting
            case waiting(String)
            case connected(path: String, settings: String)
            case disconnected(String)
        }
        public var link: Link = .starting
        public var deviceState: DeviceState?
        public var serialNumber: String?
        public var readingsSubmitted = 0
        public var readingsLost = 0
        public var bytesDiscarded = 0
        public var disconnects = 0
    }

    public let configuration: Configuration
    public let clock: any WallClock
    public let logger: Logger
    private let statusBox: StatusBox

    public var sourceID: String { configuration.id }
    public var sourceStatus: SourceStatus {
        let st = status
        let connected: Bool
        let detail: String
        switch st.link {
        case .starting: connected = false; detail = "starting"
        case .waiting(let why): connected = false; detail = why
        case .connected(let path, let settings): connected = true; detail = "\(path) \(settings)"
        case .disconnected(let why): connected = false; detail = why
        }
        let state = st.deviceState.map { "; device: \($0)" } ?? ""
        return SourceStatus(deviceID: configuration.id, profile: configuration.profile.name, transport: .serial,
                            connected: connected, detail: detail + state)
    }
    /// A snapshot of the source's status.
    public var status: Status { statusBox.value.withLock { $0 } }

    public init(configuration: Configuration, clock: any WallClock = SystemWallClock(), logger: Logger) {
        self.configuration = configuration
        self.clock = clock
        self.logger = logger
        self.statusBox = StatusBox()
    }

    final class StatusBox: Sendable {
        let value = Mutex(Status())
    }

    /// Watermarks kept in memory when no store is configured (per source run).
    final class MemoryMarks: Sendable {
        let marks = Mutex([String: OneTouchWatermark]())
    }

    public func run(into sink: any ReadingSink) async throws {
        let c = configuration
        let wake = try WakeSignal()
        let (stream, continuation) = AsyncStream.makeStream(of: LinkEvent.self)
        continuation.onTermination = { _ in wake.signal() }
        let memory = MemoryMarks()
        if let text = c.storedCursor, let (serial, mark) = WatermarkCursor.decode(text) {
            memory.marks.withLock { $0[serial] = mark }
        }
        let link = SerialLink(
            port: c.port, profile: c.profile,
            lineSettings: c.lineSettings.map { [$0] } ?? (c.profile.lineSettings.isEmpty ? [LineSettings(baud: 9600)] : c.profile.lineSettings),
            reconnectMinMilliseconds: c.reconnectMinMilliseconds, reconnectMaxMilliseconds: c.reconnectMaxMilliseconds,
            sysfs: c.sysfs, clock: clock,
            watermark: { serial in memory.marks.withLock { $0[serial] } })
        runDetachedOrInline {
            link.run(emit: { continuation.yield($0) }, wake: wake)
            continuation.finish()
        }
        let log = logger.with(source: c.id)
        var serialNumber: String?
        var clockOffset: Int64?
        var advancing = true  // a lost record stops the watermark (it is downloaded again next time)
        for await event in stream {
            switch event {
            case .connected(let path, let settings):
                log.info("serial device connected", metadata: ["path": "\(path)", "line": "\(settings)"])
                update { $0.link = .connected(path: path, settings: settings.description) }
                clockOffset = nil
                advancing = true
            case .lineSettingsChanged(let settings):
                log.notice("nothing decodes; trying the profile's next line settings", metadata: ["line": "\(settings)"])
                update { if case .connected(let p, _) = $0.link { $0.link = .connected(path: p, settings: settings.description) } }
            case .disconnected(let reason):
                log.warning("serial device disconnected; reopening when it is back", metadata: ["reason": "\(reason)"])
                update { $0.link = .disconnected(reason); $0.disconnects += 1; $0.deviceState = nil }
            case .waiting(let reason):
                log.notice("waiting for the serial device", metadata: ["reason": "\(reason)"])
                update { $0.link = .waiting(reason) }
            case .decoded(let e, let receivedAt):
                switch e {
                case .state(let state):
                    log.info("device state", metadata: ["state": "\(state)"])
                    update { $0.deviceState = state }
                case .discarded(let n, let reason):
                    log.debug("bytes discarded while resynchronising", metadata: ["bytes": "\(n)", "reason": "\(reason.rawValue)"])
                    update { $0.bytesDiscarded += n }
                case .info(.serialNumber(let s)):
                    serialNumber = s
                    update { $0.serialNumber = s }
                case .info(.clock(let t)):
                    clockOffset = receivedAt.millisecondsSinceEpoch - t.asIfUTC.millisecondsSinceEpoch
                case .info:
                    break
                case .reading(let r):
                    var reading = deviceReading(r, receivedAt: receivedAt, serialNumber: serialNumber, clockOffset: clockOffset)
                    // The watermark after this record travels with it and is stored in the same
                    // transaction: accepted means the record and the watermark are durable together.
                    var advanced: (serial: String, mark: OneTouchWatermark)?
                    if advancing, let key = r.recordKey, let t = r.deviceTime {
                        let serial = serialNumber ?? ""
                        let old = memory.marks.withLock { $0[serial] }
                        let mark = old?.advanced(time: t, key: key) ?? OneTouchWatermark(time: t, keysAtTime: [key])
                        advanced = (serial, mark)
                        reading.sourceCursor = WatermarkCursor.encode(mark, serial: serial)
                    }
                    let outcome = await sink.submit(reading)
                    switch outcome {
                    case .accepted:
                        update { $0.readingsSubmitted += 1 }
                        if let advanced { memory.marks.withLock { $0[advanced.serial] = advanced.mark } }
                    case .lost(_, let reason):
                        advancing = false
                        update { $0.readingsLost += 1 }
                        log.warning("reading lost", metadata: ["reason": "\(reason.rawValue)"])
                    }
                }
            }
        }
        try Task.checkCancellation()
    }

    private func update(_ body: (inout Status) -> Void) {
        statusBox.value.withLock { body(&$0) }
    }

    func deviceReading(_ r: DecodedReading, receivedAt: Timestamp, serialNumber: String?, clockOffset: Int64?) -> DeviceReading {
        let device = DeviceRef(id: configuration.id, profile: configuration.profile.name, transport: .serial,
                               serialNumber: serialNumber)
        var measuredAt = receivedAt.adding(milliseconds: -Int64(r.ageMilliseconds.rounded()))
        var quality = TimeQuality.gatewayReceipt
        if configuration.profile.timing == .deviceClock, let t = r.deviceTime {
            if let clockOffset {
                measuredAt = t.asIfUTC.adding(milliseconds: clockOffset)
                quality = .deviceCorrected
            } else {
                measuredAt = t.asIfUTC
                quality = .deviceUnsynchronized
            }
        }
        return DeviceReading(device: device, patientID: configuration.patientID, measuredAt: measuredAt,
                             receivedAt: receivedAt, timeQuality: quality, observations: r.observations)
    }
}

extension Logger {
    func with(source: String) -> Logger {
        var l = self
        l[metadataKey: "source"] = "\(source)"
        return l
    }
}
