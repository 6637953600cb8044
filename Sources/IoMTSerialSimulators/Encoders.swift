import IoMTCore
import IoMTSerial

// Frame encoders for the device simulators: the inverse of the IoMTSerial decoders, written
// from the same reference (../shared/reference/serial-medical-protocols.md), so tests can play
// every protocol at its real rate, with noise, truncation and bad checksums.

/// Contec old 5-byte frames (reference §1a).
public enum ContecLegacyEncoder {
    public static func frame(spo2: Int, pulse: Int, pleth: Int, signal: Int = 6, bargraph: Int = 0,
                             probeError: Bool = false, searching: Bool = false, searchingTooLong: Bool = false,
                             beep: Bool = false) -> [UInt8] {
        let b1 = 0x80 | (beep ? 0x40 : 0) | (searchingTooLong ? 0x10 : 0) | (signal & 0x0F)
        let b3 = ((pulse >> 1) & 0x40) | (searching ? 0x20 : 0) | (probeError ? 0x10 : 0) | (bargraph & 0x0F)
        return [UInt8(b1), UInt8(pleth & 0x7F), UInt8(b3), UInt8(pulse & 0x7F), UInt8(spo2 & 0x7F)]
    }
}

/// Contec V7.0 packets (reference §1b).
public enum ContecV7Encoder {
    /// Any packet: type, high byte, data with b7 forced to 1.
    public static func packet(type: UInt8, data: [UInt8]) -> [UInt8] {
        var high: UInt8 = 0x80
        for (i, d) in data.prefix(7).enumerated() where d & 0x80 != 0 { high |= 1 << UInt8(i) }
        return [type & 0x7F, high] + data.map { $0 | 0x80 }
    }

    public static func realTime(spo2: Int, pulse: Int, pleth: Int, signal: Int = 5, bargraph: Int = 6,
                                perfusionIndex: Int? = nil, probeError: Bool = false, searching: Bool = false) -> [UInt8] {
        let pi = perfusionIndex ?? 0xFFFF
        let d0 = UInt8(signal & 0x0F) | (probeError ? 0x80 : 0)
        let d1 = UInt8(pleth & 0x7F) | (searching ? 0x80 : 0)
        let d2 = UInt8(bargraph & 0x0F) | 0x10
        return packet(type: 0x01, data: [d0, d1, d2, UInt8(pulse & 0xFF), UInt8(spo2 & 0xFF),
                                         UInt8(pi & 0xFF), UInt8(pi >> 8 & 0xFF)])
    }
}

/// Nonin formats #2/#7 (25-frame packets) and #8 (reference §2).
public enum NoninEncoder {
    /// One 25-frame packet (1/3 s). `hr` 511 / `spo2` 127 mean missing.
    public static func packet(format: NoninFrameDecoder.Format, hr: Int, spo2: Int, pleth: (Int) -> Int,
                              sensorAlarm: Bool = false, outOfTrack: Bool = false) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(125)
        for frame in 1...25 {
            var status: UInt8 = 0x80 | 0x02  // green perfusion
            if frame == 1 { status |= 0x01 }
            if sensorAlarm { status |= 0x08 }
            if outOfTrack { status |= 0x10 }
            let float: UInt8
            switch frame {
            case 1: float = UInt8(hr >> 7 & 0x03)
            case 2: float = UInt8(hr & 0x7F)
            case 3: float = UInt8(spo2 & 0x7F)
            case 4: float = 0x30
            default: float = 0
            }
            let p = pleth(frame - 1)
            switch format {
            case .df2:
                let f: [UInt8] = [0x01, status, UInt8(p & 0xFF), float]
                out += f + [f.reduce(0, &+)]
            case .df7:
                let f: [UInt8] = [status, UInt8(p >> 8 & 0xFF), UInt8(p & 0xFF), float]
                out += f + [f.reduce(0, &+)]
            }
        }
        return out
    }

    public static func df8(hr: Int, spo2: Int, sensorAlarm: Bool = false, outOfTrack: Bool = false) -> [UInt8] {
        [UInt8(0x80 | (outOfTrack ? 0x20 : 0) | (hr >> 7 & 0x03)), UInt8(hr & 0x7F), UInt8(spo2 & 0x7F),
         sensorAlarm ? 0x08 : 0x00]
    }
}

/// Masimo ASCII 1 lines (reference §3).
public enum MasimoEncoder {
    public static func line(second: Int, spo2: Int?, bpm: Int?, pi: Double?, alarm: UInt32 = 0, exc: UInt32 = 0x800) -> [UInt8] {
        func pad(_ v: Int, _ w: Int) -> String { let s = String(v); return String(repeating: "0", count: max(0, w - s.count)) + s }
        let s = second % 60, m = second / 60 % 60, h = second / 3600 % 24
        let spo2Text = spo2.map { pad($0, 3) } ?? "---"
        let bpmText = bpm.map { pad($0, 3) } ?? "---"
        let piText = pi.map { v -> String in
            let c = Int((v * 100).rounded())
            return pad(c / 100, 2) + "." + pad(c % 100, 2)
        } ?? "--.--"
        func hex(_ v: UInt32, _ w: Int) -> String {
            let s = String(v, radix: 16, uppercase: true); return String(repeating: "0", count: max(0, w - s.count)) + s
        }
        let text = "02/22/16 \(pad(h, 2)):\(pad(m, 2)):\(pad(s, 2)) SN=0000056661 SPO2=\(spo2Text)% BPM=\(bpmText) PI=\(piText)% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=\(hex(alarm, 4)) EXC=\(hex(exc, 6))\r\n"
        return Array(text.utf8)
    }
}

/// A OneTouch Ultra 2 meter: answers `DM@`, `DMF`, `DMP` with checksummed lines (reference §4).
public struct OneTouchMeterSimulator: Sendable {
    public struct StoredRecord: Sendable {
        public var date: String  // "MM/DD/YY"
        public var time: String  // "HH:MM:SS"
        public var mgPerDL: Int
        public init(date: String, time: String, mgPerDL: Int) {
            self.date = date
            self.time = time
            self.mgPerDL = mgPerDL
        }
    }
    public var serial: String
    /// Newest first, as the meter sends them.
    public var records: [StoredRecord]
    /// Corrupts the checksum of this record index once (then clears itself).
    public var corruptRecordOnce: Int?
    private var pending: [UInt8] = []

    public init(serial: String = "ZSK2326BY", records: [StoredRecord]) {
        self.serial = serial
        self.records = records
    }

    public static func line(_ body: String) -> [UInt8] {
        let b = Array(body.utf8)
        return b + OneTouchUltra2.checksumSuffix(b) + [0x0D, 0x0A]
    }

    /// Feeds host bytes; returns the reply bytes.
    public mutating func hostSent(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        for b in bytes {
            if b == 0x0D || b == 0x11 {
                let cmd = String(decoding: pending, as: UTF8.self)
                pending = []
                switch cmd {
                case "DM@": out += Self.line("@ \"\(serial)\"")
                case "DMF": out += Self.line("F \"TUE\",\"01/03/17\",\"17:59:55   \"")
                case "DMP":
                    func pad(_ v: Int, _ w: Int) -> String { let s = String(v); return String(repeating: "0", count: max(0, w - s.count)) + s }
                    out += Self.line("P \(pad(records.count, 3)),\"\(serial)\",\"MG/DL \"")
                    for (i, r) in records.enumerated() {
                        var l = Self.line("P \"SUN\",\"\(r.date)\",\"\(r.time)   \",\"  \(pad(r.mgPerDL, 3)) \",\"N\",\"00\", 00")
                        if corruptRecordOnce == i {
                            corruptRecordOnce = nil
                            l[l.count - 3] = l[l.count - 3] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
                        }
                        out += l
                    }
                default: break
                }
            } else {
                pending.append(b)
                if pending.count > 64 { pending.removeFirst() }
            }
        }
        return out
    }
}

/// The deterministic generator of the simulators and property tests (IoMTCore's SplitMix64).
public typealias SimRandom = SplitMix64
