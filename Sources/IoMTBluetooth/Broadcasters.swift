import IoMTCore
import IoMTHCI
import IoMTHealthProfiles
import Logging

/// A broadcast-only sensor (a scale or thermometer that never connects): its measurements are
/// read from its advertisements (typically ADV_NONCONN_IND, Core v5.4 Vol 6 Part B 2.3.1.3; the
/// connectable bit is not looked at) with a declarative ``AdvertisementProfile`` reading Service
/// Data (Supplement to the Core Specification Part A 1.11) or Manufacturer Specific Data (Part A
/// 1.4) (issue 6).
public struct BLEBroadcaster: Sendable, Hashable {
    public var id: String
    /// The advertiser's address; nil: any advertiser carrying the profile's source (only when the
    /// configuration says so explicitly). Matched on the 48 bits whatever the address type; a
    /// bonded device's resolvable private address is out of scope (broadcasters do not bond).
    public var address: BDAddress?
    public var patientID: String
    public var profile: AdvertisementProfile
    /// The same payload is published again only after this long.
    public var repeatWindowMs: UInt64
    public init(id: String, address: BDAddress?, patientID: String, profile: AdvertisementProfile, repeatWindowMs: UInt64 = 30_000) {
        self.id = id
        self.address = address
        self.patientID = patientID
        self.profile = profile
        self.repeatWindowMs = repeatWindowMs
    }
}

/// The pure part: which broadcasters an advertisement is for, whether its payload decodes and
/// whether it is news. An advertiser repeats the same measurement for seconds; a payload is
/// published when it differs from the last one published for that broadcaster, or when the same
/// payload is seen again `repeatWindowMs` after it was last published. Time is an input.
public struct BroadcastFilter: Sendable {
    public enum Outcome: Sendable, Equatable {
        /// Publish these observations for broadcaster `index`.
        case publish(index: Int, DecodedMeasurement)
        /// The payload published last, within the repeat window.
        case duplicate(index: Int)
        /// A `require` condition does not hold (e.g. the weight is not stable yet).
        case notReady(index: Int)
        /// The payload does not fit the profile (a field beyond its end); reported once per distinct payload.
        case decodeError(index: Int, String)
    }

    public let broadcasters: [BLEBroadcaster]
    private var last: [Int: (payload: [UInt8], atMs: UInt64)] = [:]
    /// The last payload that did not decode, per broadcaster: reported once, not at every repeat.
    private var lastRejected: [Int: [UInt8]] = [:]

    public init(_ broadcasters: [BLEBroadcaster]) { self.broadcasters = broadcasters }

    /// One advertisement's outcomes, one per broadcaster it matches (none for other advertisers
    /// or advertisements without the profile's source).
    public mutating func observe(address: BDAddress, data: AdvertisingData, nowMs: UInt64) -> [Outcome] {
        var out: [Outcome] = []
        let serviceData = data.serviceData16, manufacturerData = data.manufacturerData
        for (i, b) in broadcasters.enumerated() {
            if let want = b.address, want != address { continue }
            guard let payload = b.profile.payload(serviceData: serviceData, manufacturerData: manufacturerData) else { continue }
            if let l = last[i], l.payload == payload, nowMs &- l.atMs < b.repeatWindowMs {
                out.append(.duplicate(index: i))
                continue
            }
            if lastRejected[i] == payload {
                out.append(.duplicate(index: i))
                continue
            }
            let decoded: DecodedMeasurement?
            do {
                decoded = try b.profile.decode(serviceData: serviceData, manufacturerData: manufacturerData)
            } catch {
                lastRejected[i] = payload
                out.append(.decodeError(index: i, "\(error)"))
                continue
            }
            guard let decoded, !decoded.observations.isEmpty else {
                out.append(.notReady(index: i))
                continue
            }
            last[i] = (payload, nowMs)
            lastRejected[i] = nil
            out.append(.publish(index: i, decoded))
        }
        return out
    }
}

/// The broadcasters of one Bluetooth service: reads the host's advertisement stream, runs the
/// ``BroadcastFilter`` and hands each new measurement to the sink as a `DeviceReading`
/// (transport BLE, profile the profile's name, time of receipt at the gateway). A payload that
/// does not decode is counted and logged, never fatal. Keeps one status per broadcaster
/// (last seen, last published: PHI-free).
public actor Broadcasters {
    let sink: any ReadingSink
    let clock: any WallClock
    let logger: Logger
    let board: StatusBoard
    private var filter: BroadcastFilter
    private var lastSeen: [Int: Timestamp] = [:]
    private var lastPublished: [Int: Timestamp] = [:]
    private var errors: [Int: Int] = [:]
    /// Payloads that did not fit their profile (each distinct payload counted once).
    public private(set) var decodeErrors = 0
    /// Readings the sink accepted.
    public private(set) var published = 0
    public nonisolated let count: Int

    public init(_ broadcasters: [BLEBroadcaster], sink: any ReadingSink, clock: any WallClock, logger: Logger, board: StatusBoard) {
        self.filter = BroadcastFilter(broadcasters)
        self.sink = sink
        self.clock = clock
        self.logger = logger
        self.board = board
        self.count = broadcasters.count
        for b in broadcasters {
            board.set(SourceStatus(deviceID: b.id, profile: b.profile.name, transport: .ble, connected: false, detail: "not seen yet"))
        }
    }

    /// Consumes advertisements until the stream ends or the task is cancelled.
    public func run(_ advertisements: AsyncStream<BluetoothHost.Advertisement>) async {
        for await ad in advertisements {
            await observe(address: ad.address.address, data: ad.data, nowMs: ad.receivedAtMs)
        }
    }

    /// One advertisement (`nowMs`: a monotonic clock in milliseconds, the host's receipt time).
    public func observe(address: BDAddress, data: AdvertisingData, nowMs: UInt64) async {
        let outcomes = filter.observe(address: address, data: data, nowMs: nowMs)
        guard !outcomes.isEmpty else { return }
        let received = clock.now()
        for outcome in outcomes {
            switch outcome {
            case .publish(let i, let decoded):
                lastSeen[i] = received
                let b = filter.broadcasters[i]
                let reading = DeviceReading(
                    device: DeviceRef(id: b.id, profile: b.profile.name, transport: .ble),
                    patientID: b.patientID, measuredAt: received, receivedAt: received, timeQuality: .gatewayReceipt,
                    observations: decoded.observations)
                if case .accepted = await sink.submit(reading) {
                    published += 1
                    lastPublished[i] = received
                }
            case .duplicate(let i), .notReady(let i):
                lastSeen[i] = received
            case .decodeError(let i, let error):
                lastSeen[i] = received
                decodeErrors += 1
                errors[i, default: 0] += 1
                logger.warning("advertisement does not fit its profile; dropped",
                               metadata: ["device": "\(filter.broadcasters[i].id)", "error": "\(error)"])
            }
            updateStatus(outcome.index)
        }
    }

    private func updateStatus(_ i: Int) {
        let b = filter.broadcasters[i]
        var detail = "last seen \(lastSeen[i].map { "\($0)" } ?? "never")"
        detail += ", last published \(lastPublished[i].map { "\($0)" } ?? "never")"
        if let n = errors[i] { detail += ", \(n) undecodable payload\(n == 1 ? "" : "s")" }
        board.set(SourceStatus(deviceID: b.id, profile: b.profile.name, transport: .ble, connected: false, detail: detail))
    }
}

extension BroadcastFilter.Outcome {
    var index: Int {
        switch self {
        case .publish(let i, _), .duplicate(let i), .notReady(let i), .decodeError(let i, _): i
        }
    }
}
