import IoMTCore
@testable import IoMTSerial
import IoMTSerialSimulators
import Testing

let rad8Line = "02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n"

@Suite("Masimo ASCII 1 (reference §3)")
struct MasimoTests {
    @Test("Rad-8 line (yahnatan): SpO2 98, PR 97, PI 3.60, device time, EXC 0x800 normal")
    func rad8() {
        let (events, agree) = decodeAllWays(MasimoASCII1Decoder(), Array(rad8Line.utf8))
        #expect(agree)
        let r = events.readings[0]
        #expect(r.value(.pulseOximetrySpO2) == .numeric(98))
        #expect(r.value(.pulseOximetryPulseRate) == .numeric(97))
        #expect(r.value(.pulseOximetryPerfusionIndex) == .numeric(3.6))
        #expect(r.deviceTime?.description == "2016-02-22 22:47:45")
        #expect(events.states == [DeviceState(conditions: [], alarmBits: 0, exceptionBits: 0x800)])
    }

    @Test("Radical-7 line with BPM=240 but EXC 0x820 (sensor off): no numbers at all")
    func radical7SensorOff() {
        let line = "12/01/05 11:56:29 SN=0123456789 SPO2=098% BPM=240 PI=20.00% SPCO=01.0% SPMET=00.5% DESAT=01 PIDELTA=-02 PVI=027 ALARM=0000 EXC=000820\r\n"
        let r = whole(MasimoASCII1Decoder(), Array(line.utf8)).readings[0]
        #expect(r.value(.pulseOximetrySpO2) == .unavailable(.sensorOff))
        #expect(r.value(.pulseOximetryPulseRate) == .unavailable(.sensorOff))
        #expect(r.value(.pulseOximetryPerfusionIndex) == .unavailable(.sensorOff))
    }

    @Test("Radical-5 short line (no SN, ALARM=20 silenced, EXC=800)")
    func radical5() {
        let events = whole(MasimoASCII1Decoder(), Array("09/15/10 15:10:29 SPO2=097% BPM=064 PI=11.82% ALARM=20 EXC=800\r\n".utf8))
        #expect(events.readings[0].value(.pulseOximetryPulseRate) == .numeric(64))
        #expect(events.readings[0].value(.pulseOximetryPerfusionIndex) == .numeric(11.82))
        #expect(events.states[0].conditions == [.alarmSilenced])
    }

    @Test("service-manual line with every value dashed: all missing")
    func allMissing() {
        let line = "05/15/07 08:12:21 SN=0000070986 SPO2=---% BPM=--- PI=--.--% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- PVI=--- ALARM=0000 EXC=000000\r\n"
        let r = whole(MasimoASCII1Decoder(), Array(line.utf8)).readings[0]
        #expect(r.observations.map(\.value) == Array(repeating: .unavailable(.missing), count: 3))
    }

    @Test("newer Radical-7 variant: PI without %, 6-digit ALARM, 7-digit EXC, extra fields")
    func colorVariant() {
        let line = "01/02/20 10:00:00 SPO2=099% BPM=070 PI=00.55 SPCO=--% SPMET=--.-% SPHB=--.- SPOC=-- RESVD=--- DESAT=-- PIDELTA=+-- PVI=--- ALARM=000000 EXC=0000C00 EXC1=00000000\r\n"
        let r = whole(MasimoASCII1Decoder(), Array(line.utf8)).readings[0]
        #expect(r.value(.pulseOximetryPerfusionIndex) == .numeric(0.55))
        #expect(r.value(.pulseOximetrySpO2) == .numeric(99))
    }

    @Test("a corrupted digit, garbage and an over-long line are discarded; the next good line decodes")
    func corrupt() {
        var bytes = Array(rad8Line.utf8)
        bytes[bytes.firstIndex(of: UInt8(ascii: "B"))! + 5] = UInt8(ascii: "#")  // BPM=0#7
        bytes += [UInt8](repeating: 0x41, count: 1000) + [0x0A]
        bytes += [0xFF, 0x00, 0x0A]
        bytes += Array(rad8Line.utf8)
        let (events, agree) = decodeAllWays(MasimoASCII1Decoder(), bytes)
        #expect(agree)
        #expect(events.readings.count == 1)
        #expect(events.discardReasons == [.badLine])
        #expect(events.discardedBytes == rad8Line.utf8.count + 1001 + 3)
    }
}

