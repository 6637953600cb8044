import IoMTCore

/// Serial line settings (reference: each device's "Serial:" line).
public struct LineSettings: Hashable, Sendable, CustomStringConvertible {
    public enum Parity: String, Hashable, Sendable, CaseIterable { case none, odd, even }
    public var baud: Int
    public var dataBits: Int
    public var parity: Parity
    public var stopBits: Int
    /// RTS/CTS. Off for every device in the reference. XON/XOFF is never offered: with IXON the
    /// tty layer eats every 0x11/0x13 data byte (reference, general rules).
    public var hardwareFlowControl: Bool

    public init(baud: Int, dataBits: Int = 8, parity: Parity = .none, stopBits: Int = 1, hardwareFlowControl: Bool = false) {
        self.baud = baud
        self.dataBits = dataBits
        self.parity = parity
        self.stopBits = stopBits
        self.hardwareFlowControl = hardwareFlowControl
    }

    /// Baud rates the port layer can set (termios B* constants).
    public static let supportedBauds = [1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400]

    public var description: String {
        "\(baud) \(dataBits)\(parity == .none ? "N" : parity == .odd ? "O" : "E")\(stopBits)\(hardwareFlowControl ? " rtscts" : "")"
    }
}

/// The host side of a device link, as a pure state machine: what to send when the port opens,
/// what the received bytes mean, what to send on a timer. `nextDeadline` is the poll(2)
/// timeout for the I/O layer (Int64.max: none), so nothing is polled on a fixed period.
public protocol DeviceDriver: Sendable {
    mutating func opened(atMilliseconds now: Int64) -> [UInt8]
    mutating func received(_ bytes: ArraySlice<UInt8>, atMilliseconds now: Int64) -> (events: [DecoderEvent], send: [UInt8])
    mutating func tick(atMilliseconds now: Int64) -> [UInt8]
    var nextDeadline: Int64 { get }
}

/// A streaming device that needs no commands.
public struct StreamDriver<D: StreamDecoder>: DeviceDriver {
    public var decoder: D
    public init(_ decoder: D) { self.decoder = decoder }
    public mutating func opened(atMilliseconds now: Int64) -> [UInt8] { [] }
    public mutating func received(_ bytes: ArraySlice<UInt8>, atMilliseconds now: Int64) -> (events: [DecoderEvent], send: [UInt8]) {
        (decoder.feed(bytes), [])
    }
    public mutating func tick(atMilliseconds now: Int64) -> [UInt8] { [] }
    public var nextDeadline: Int64 { .max }
}

/// Contec V7.0: start command on open, keep-alive, restart when the stream goes quiet.
public struct ContecV7Driver: DeviceDriver {
    public var decoder = ContecV7Decoder()
    public var session = ContecV7Session()
    public init() {}
    public mutating func opened(atMilliseconds now: Int64) -> [UInt8] { session.opened(atMilliseconds: now) }
    public mutating func received(_ bytes: ArraySlice<UInt8>, atMilliseconds now: Int64) -> (events: [DecoderEvent], send: [UInt8]) {
        let events = decoder.feed(bytes)
        if events.contains(where: { if case .reading = $0 { true } else if case .state = $0 { true } else { false } }) {
            session.receivedData(atMilliseconds: now)
        }
        return (events, [])
    }
    public mutating func tick(atMilliseconds now: Int64) -> [UInt8] { session.tick(atMilliseconds: now) }
    public var nextDeadline: Int64 { session.nextDeadline }
}

/// OneTouch Ultra 2: one download per connection.
public struct OneTouchDriver: DeviceDriver {
    public var session: OneTouchSession
    public init(watermark: @escaping @Sendable (String) -> OneTouchWatermark?) {
        session = OneTouchSession(watermark: watermark)
    }
    public mutating func opened(atMilliseconds now: Int64) -> [UInt8] { session.opened(atMilliseconds: now) }
    public mutating func received(_ bytes: ArraySlice<UInt8>, atMilliseconds now: Int64) -> (events: [DecoderEvent], send: [UInt8]) {
        session.received(bytes, atMilliseconds: now)
    }
    public mutating func tick(atMilliseconds now: Int64) -> [UInt8] { session.tick(atMilliseconds: now) }
    public var nextDeadline: Int64 { session.nextDeadline }
}

/// A built-in device profile: its name, line settings (alternatives tried in order when no
/// frame decodes) and how readings are timed.
public struct SerialProfile: Sendable {
    /// How the measurement time of a reading is found.
    public enum Timing: Sendable {
        /// A live stream: receipt time minus the reading's age (`gateway-receipt`).
        case live
        /// Stored records with the device clock, corrected by the offset measured when the
        /// device reported its clock (`device-corrected`).
        case deviceClock
    }

    public var name: String
    public var lineSettings: [LineSettings]
    public var timing: Timing
    /// How long without a decoded frame before the next line-settings alternative is tried.
    public var noFrameTimeoutMilliseconds: Int64
    public var makeDriver: @Sendable (_ watermark: @escaping @Sendable (String) -> OneTouchWatermark?) -> any DeviceDriver

    public static let contecLegacy = SerialProfile(
        name: "contec-cms50-legacy",
        // 19200 8O1 first (atbrask, OSCAR, tranzoa), then 4800 8N1 (translated manual).
        lineSettings: [LineSettings(baud: 19200, parity: .odd), LineSettings(baud: 4800)],
        timing: .live, noFrameTimeoutMilliseconds: 5000, makeDriver: { _ in StreamDriver(ContecLegacyDecoder()) })
    public static let contecV7 = SerialProfile(
        name: "contec-cms50-v7", lineSettings: [LineSettings(baud: 115200)],
        timing: .live, noFrameTimeoutMilliseconds: 5000, makeDriver: { _ in ContecV7Driver() })
    public static let noninDF2 = SerialProfile(
        name: "nonin-df2", lineSettings: [LineSettings(baud: 9600)],
        timing: .live, noFrameTimeoutMilliseconds: 5000, makeDriver: { _ in StreamDriver(NoninFrameDecoder(format: .df2)) })
    public static let noninDF7 = SerialProfile(
        name: "nonin-df7", lineSettings: [LineSettings(baud: 9600)],
        timing: .live, noFrameTimeoutMilliseconds: 5000, makeDriver: { _ in StreamDriver(NoninFrameDecoder(format: .df7)) })
    public static let noninDF8 = SerialProfile(
        name: "nonin-df8", lineSettings: [LineSettings(baud: 9600)],
        timing: .live, noFrameTimeoutMilliseconds: 5000, makeDriver: { _ in StreamDriver(NoninDF8Decoder()) })
    public static let masimoASCII1 = SerialProfile(
        name: "masimo-ascii1", lineSettings: [LineSettings(baud: 9600)],
        timing: .live, noFrameTimeoutMilliseconds: 10_000, makeDriver: { _ in StreamDriver(MasimoASCII1Decoder()) })
    public static let oneTouchUltra2 = SerialProfile(
        name: "onetouch-ultra2", lineSettings: [LineSettings(baud: 9600)],
        timing: .deviceClock, noFrameTimeoutMilliseconds: .max, makeDriver: { OneTouchDriver(watermark: $0) })

    /// Every built-in profile.
    public static let builtIn: [SerialProfile] = [contecLegacy, contecV7, noninDF2, noninDF7, noninDF8, masimoASCII1, oneTouchUltra2]

    public static func named(_ name: String) -> SerialProfile? { builtIn.first { $0.name == name } }
}
