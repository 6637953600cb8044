import IoMTCore
@testable import IoMTSerial
import IoMTSerialSimulators
import Testing

let masimoRealLines = [
    "02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800",
    "12/01/05 11:56:29 SN=0123456789 SPO2=098% BPM=240 PI=20.00% SPCO=01.0% SPMET=00.5% DESAT=01 PIDELTA=-02 PVI=027 ALARM=0000 EXC=000820",
    "09/15/10 15:10:29 SPO2=097% BPM=064 PI=11.82% ALARM=20 EXC=800",
    "05/15/07 08:12:21 SN=0000070986 SPO2=---% BPM=--- PI=--.--% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- PVI=--- ALARM=0000 EXC=000000",
    "01/02/20 10:00:00 SPO2=099% BPM=070 PI=00.55 SPCO=--% SPMET=--.-% SPHB=--.- SPOC=-- RESVD=--- DESAT=-- PIDELTA=+-- PVI=--- ALARM=000000 EXC=0000C00 EXC1=00000000",
]

@Suite("Declarative line profiles")
struct LineProfileTests {
    @Test("Masimo ASCII 1 is expressible: the line profile gives the same observations and conditions as the built-in decoder on every real line")
    func masimoEquivalence() throws {
        let bytes = Array(masimoRealLines.map { $0 + "\r\n" }.joined().utf8)
        let (generic, agree) = decodeAllWays(try LineProfileDecoder(profile: .masimoASCII1Example), bytes)
        #expect(agree)
        let builtIn = whole(MasimoASCII1Decoder(), bytes)
        #expect(generic.readings.count == 5)
        #expect(generic.readings.map(\.observations) == builtIn.readings.map(\.observations))
        // The built-in decoder's state also carries the raw EXC/ALARM words (one more change here).
        func changes(_ states: [DeviceState]) -> [Set<DeviceCondition>] {
            states.map(\.conditions).reduce(into: []) { if $0.last != $1 { $0.append($1) } }
        }
        #expect(changes(generic.states) == changes(builtIn.states))
        #expect(changes(generic.states) == [[], [.sensorOff], [.alarmSilenced], []])
    }

    @Test("dashes are missing, scale applies, a corrupt capture rejects the line, a non-matching line is discarded")
    func genericRules() throws {
        let profile = LineProfile(
            name: "thermo", lineSettings: LineSettings(baud: 9600),
            pattern: #"^T=(?<t>\S+) W=(?<w>\S+)$"#,
            fields: [
                .init(capture: "t", kind: .measurement(code: .bodyTemperature, unit: .celsius, scale: 0.1, plausible: 25...45)),
                .init(capture: "w", kind: .measurement(code: .bodyWeight, unit: .kilogram, scale: 1, plausible: nil)),
            ])
        let text = "T=372 W=70.5\nT=--- W=-1\nT=3#2 W=1\nhello\nT=999 W=1\n"
        let (events, agree) = decodeAllWays(try LineProfileDecoder(profile: profile), Array(text.utf8))
        #expect(agree)
        let values = events.readings.map { $0.observations.map(\.value) }
        #expect(values.count == 3)
        #expect(values[0] == [.numeric(37.2), .numeric(70.5)])
        #expect(values[1] == [.unavailable(.missing), .numeric(-1)])
        #expect(values[2] == [.unavailable(.outOfRange), .numeric(1)])
        #expect(events.discardedBytes == "T=3#2 W=1\nhello\n".utf8.count)
    }

    @Test("an invalid pattern is refused when the decoder is made")
    func badPattern() {
        let profile = LineProfile(name: "bad", lineSettings: LineSettings(baud: 9600), pattern: "(?<x>[0-9", fields: [])
        #expect(throws: (any Error).self) { try LineProfileDecoder(profile: profile) }
    }

    @Test("random bytes through the Masimo line profile: plausible numbers only")
    func fuzz() throws {
        for seed in 0..<20 {
            var rng = SimRandom(seed: UInt64(seed))
            var bytes: [UInt8] = []
            for line in masimoRealLines {
                var l = Array((line + "\r\n").utf8)
                l[Int.random(in: 0..<l.count, using: &rng)] = UInt8(truncatingIfNeeded: rng.next())
                bytes += l
            }
            let events = whole(try LineProfileDecoder(profile: .masimoASCII1Example), bytes)
            checkPlausible(events, plethMax: 0, "line-profile")
        }
    }
}
