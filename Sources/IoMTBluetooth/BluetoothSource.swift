import IoMTCore
import IoMTHCI
import IoMTHCITransport
import Logging
import Synchronization

/// The Bluetooth side as one reading source for the agent: `run(into:)` runs a
/// `BluetoothService` over the configured controller until cancelled; `sourceStatuses` has one
/// entry per allow-listed wearable. The running service is reachable for scan and pair.
public final class BluetoothSource: ReadingSource, Sendable {
    public let options: BluetoothServiceOptions
    let initialDevices: [BLEDevice]
    let clock: any WallClock
    let logger: Logger
    let board: StatusBoard
    private let running = Mutex<BluetoothService?>(nil)
    private let started = Mutex<[CheckedContinuation<BluetoothService, Never>]>([])

    public init(options: BluetoothServiceOptions, devices: [BLEDevice], clock: any WallClock, logger: Logger) {
        self.options = options
        self.initialDevices = devices
        self.clock = clock
        self.logger = logger
        self.board = StatusBoard(devices.map {
            SourceStatus(deviceID: $0.id, profile: $0.profile, transport: .ble, connected: false, detail: "not started")
        })
    }

    public var sourceID: String { "bluetooth" }
    public var sourceStatus: SourceStatus {
        SourceStatus(deviceID: "bluetooth", profile: "bluetooth", transport: .ble, connected: false, detail: options.transport.description)
    }
    public var sourceStatuses: [SourceStatus] { board.snapshot() }

    /// Battery level in percent of a device, as last read (nil before the first connection).
    public func battery(of deviceID: String) -> Int? { board.battery(deviceID) }

    public func run(into sink: any ReadingSink) async throws {
        let service = BluetoothService(options: options, devices: initialDevices, sink: sink, clock: clock, logger: logger, board: board)
        running.withLock { $0 = service }
        let waiters = started.withLock { w in defer { w.removeAll() }; return w }
        for w in waiters { w.resume(returning: service) }
        await service.run()
    }

    /// The running service (waits until `run` started it).
    public func service() async -> BluetoothService {
        if let s = running.withLock({ $0 }) { return s }
        return await withCheckedContinuation { c in
            let now: BluetoothService? = running.withLock { s in
                if let s { return s }
                started.withLock { $0.append(c) }
                return nil
            }
            if let now { c.resume(returning: now) }
        }
    }
}

/// The per-device link states the status topic shows, updated by the service as they change.
public final class StatusBoard: Sendable {
    private let entries: Mutex<[String: SourceStatus]>
    private let order: Mutex<[String]>
    private let batteries = Mutex<[String: Int]>([:])
    private let clockOffsets = Mutex<[String: Int64]>([:])

    /// Battery level in percent, as last read from the device.
    public func battery(_ id: String) -> Int? { batteries.withLock { $0[id] } }

    func setBattery(_ id: String, _ percent: Int) { batteries.withLock { $0[id] = percent } }

    /// The device clock's offset measured on the current link (nil: unknown or set by the gateway).
    func setClockOffset(_ id: String, _ milliseconds: Int64?) { clockOffsets.withLock { $0[id] = milliseconds } }

    init(_ initial: [SourceStatus]) {
        entries = Mutex(Dictionary(initial.map { ($0.deviceID, $0) }, uniquingKeysWith: { a, _ in a }))
        order = Mutex(initial.map(\.deviceID))
    }

    func set(_ status: SourceStatus) {
        entries.withLock { $0[status.deviceID] = status }
        order.withLock { if !$0.contains(status.deviceID) { $0.append(status.deviceID) } }
    }

    func remove(_ id: String) {
        entries.withLock { $0[id] = nil }
        order.withLock { $0.removeAll { $0 == id } }
    }

    func snapshot() -> [SourceStatus] {
        let ids = order.withLock { $0 }
        let levels = batteries.withLock { $0 }
        let offsets = clockOffsets.withLock { $0 }
        return entries.withLock { e in
            ids.compactMap { id in
                guard var s = e[id] else { return nil }
                s.batteryPercent = levels[id]
                s.clockOffsetMs = offsets[id]
                return s
            }
        }
    }
}
