import IoMTBluetooth
import IoMTCore
import IoMTHealthProfiles
import Testing

/// A Glucose Measurement 0x2A18 (reference §6.1): concentration in kg/L (mg/dL × 10⁻⁵), capillary
/// whole blood from a finger, base time 2026-01-01 08:00, optionally "context follows".
func glucoseMeasurement(_ seq: UInt16, mgdl: UInt16 = 120, context: Bool = false) -> [UInt8] {
    let flags: UInt8 = 0x02 | (context ? 0x10 : 0)
    return [flags, UInt8(seq & 0xFF), UInt8(seq >> 8), 0xEA, 0x07, 1, 1, 8, 0, 0,
            UInt8(mgdl & 0xFF), 0xB0 | UInt8((mgdl >> 8) & 0x0F), 0x11]
}

/// A Glucose Measurement Context 0x2A34 with meal (1 preprandial) and tester-health (self, none).
func glucoseContext(_ seq: UInt16, meal: UInt8 = 1) -> [UInt8] {
    [0x06, UInt8(seq & 0xFF), UInt8(seq >> 8), meal, 0x51]
}

extension GlucoseDownload.Action {
    var record: GlucoseRecord? { if case .deliver(let r) = self { return r }; return nil }
    var written: [UInt8]? { if case .writeRACP(let b) = self { return b }; return nil }
    var failure: String? { if case .failed(let f) = self { return f }; return nil }
    var finished: Int? { if case .downloadFinished(let n) = self { return n }; return nil }
    var logLine: String? { if case .log(_, let m) = self { return m }; return nil }
}

/// The RACP download as a pure state machine, fed scripted bytes (reference §6.3, §6.4).
@Suite struct GlucoseDownloadTests {
    @Test func theFirstRequestAsksForAllRecordsThenForThoseAfterTheStoredSequence() {
        var m = GlucoseDownload()
        #expect(m.start(lastStored: nil, now: 0).compactMap(\.written) == [[0x01, 0x01]])
        #expect(m.phase == .downloading)
        var n = GlucoseDownload()
        #expect(n.start(lastStored: 5, now: 0).compactMap(\.written) == [[0x01, 0x03, 0x01, 0x06, 0x00]])
        #expect(n.floor == 5)
        var w = GlucoseDownload()
        // After 0xFFFF there is no next number: everything again, nothing dropped as a duplicate.
        #expect(w.start(lastStored: 0xFFFF, now: 0).compactMap(\.written) == [[0x01, 0x01]])
        #expect(w.floor == nil)
    }

    @Test func recordsArePairedWithTheirContextBySequenceNumberAndSuccessEndsTheDownload() {
        var m = GlucoseDownload()
        _ = m.start(lastStored: nil, now: 0)
        // Record 1 flags a context: held until it comes.
        #expect(m.receive(.measurement(glucoseMeasurement(1, context: true)), now: 10).compactMap(\.record).isEmpty)
        let first = m.receive(.context(glucoseContext(1, meal: 2)), now: 11).compactMap(\.record)
        #expect(first.count == 1)
        #expect(first.first?.sequenceNumber == 1)
        #expect(first.first?.context?.meal == 2)
        #expect(first.first?.normalized.statuses.contains("meal-postprandial") == true)
        #expect(first.first?.normalized.statuses.contains("context-follows") == false)
        // Record 2 has none: delivered at once, 120 mg/dL capillary whole blood.
        let second = m.receive(.measurement(glucoseMeasurement(2, mgdl: 98)), now: 12).compactMap(\.record)
        #expect(second.first?.context == nil && second.first?.contextMissing == false)
        let obs = second.first?.normalized.observations.first
        #expect(obs?.code == MDCCode(rawValue: 160184))
        #expect(obs?.unit == "mg/dL")
        #expect(obs?.value == .numeric(98))
        let end = m.receive(.racp([0x06, 0x00, 0x01, 0x01]), now: 13)
        #expect(end.compactMap(\.finished) == [2])
        #expect(m.phase == .live)
        #expect(m.nextDeadline == nil)
        #expect(m.floor == 2)
        // Live: a new measurement the meter notifies is delivered too.
        #expect(m.receive(.measurement(glucoseMeasurement(3)), now: 5_000).compactMap(\.record).map(\.sequenceNumber) == [3])
        #expect(m.delivered == 3)
    }

    @Test func noRecordsFoundIsTheEndOfADownloadNotAFailure() {
        var m = GlucoseDownload()
        _ = m.start(lastStored: 7, now: 0)
        let out = m.receive(.racp([0x06, 0x00, 0x01, 0x06]), now: 5)
        #expect(out.compactMap(\.finished) == [0])
        #expect(out.compactMap(\.failure).isEmpty)
        #expect(out.compactMap(\.logLine).contains { $0.contains("no new records") })
        #expect(m.phase == .live)
    }

    @Test func aRecordAtOrBelowTheStoredSequenceIsDroppedAsADuplicate() {
        var m = GlucoseDownload()
        _ = m.start(lastStored: 4, now: 0)
        #expect(m.receive(.measurement(glucoseMeasurement(4)), now: 1).compactMap(\.record).isEmpty)
        #expect(m.receive(.measurement(glucoseMeasurement(2)), now: 2).compactMap(\.record).isEmpty)
        #expect(m.receive(.measurement(glucoseMeasurement(5)), now: 3).compactMap(\.record).map(\.sequenceNumber) == [5])
        // The same record notified again (a meter repeating itself) is a duplicate too.
        #expect(m.receive(.measurement(glucoseMeasurement(5)), now: 4).compactMap(\.record).isEmpty)
        #expect(m.duplicates == 3)
    }

    @Test func aFlaggedContextThatNeverComesIsGivenUpOnTheNextMeasurementTheResponseOrItsDeadline() {
        var m = GlucoseDownload()
        _ = m.start(lastStored: nil, now: 0)
        _ = m.receive(.measurement(glucoseMeasurement(1, context: true)), now: 0)
        let onNext = m.receive(.measurement(glucoseMeasurement(2, context: true)), now: 5).compactMap(\.record)
        #expect(onNext.map(\.sequenceNumber) == [1])
        #expect(onNext.first?.contextMissing == true)
        #expect(onNext.first?.normalized.statuses.contains("context-missing") == true)
        // A context for another record does not complete record 2.
        #expect(m.receive(.context(glucoseContext(9)), now: 6).compactMap(\.record).isEmpty)
        let onResponse = m.receive(.racp([0x06, 0x00, 0x01, 0x01]), now: 7)
        #expect(onResponse.compactMap(\.record).map(\.sequenceNumber) == [2])
        #expect(onResponse.compactMap(\.finished) == [2])
        // Live, the context deadline delivers it.
        _ = m.receive(.measurement(glucoseMeasurement(3, context: true)), now: 100)
        #expect(m.nextDeadline == 100 + m.options.contextTimeoutMs)
        #expect(m.receive(.tick, now: 100 + m.options.contextTimeoutMs - 1).compactMap(\.record).isEmpty)
        #expect(m.receive(.tick, now: 100 + m.options.contextTimeoutMs).compactMap(\.record).map(\.sequenceNumber) == [3])
    }

    @Test(arguments: [UInt8(0x80), 0xFE])
    func procedureAlreadyInProgressOldAndNewCodesAbortThenAskAgain(code: UInt8) {
        var m = GlucoseDownload()
        let request = m.start(lastStored: 2, now: 0).compactMap(\.written)
        let abort = m.receive(.writeFailed(attError: code), now: 1)
        #expect(abort.compactMap(\.written) == [[0x03, 0x00]])
        #expect(m.phase == .aborting)
        let again = m.receive(.racp([0x06, 0x00, 0x03, 0x01]), now: 2)
        #expect(again.compactMap(\.written) == request)
        #expect(m.phase == .downloading)
        // Refused every time: gives up after maxBusyRetries.
        for _ in 1..<m.options.maxBusyRetries {
            _ = m.receive(.writeFailed(attError: code), now: 3)
            _ = m.receive(.racp([0x06, 0x00, 0x03, 0x01]), now: 4)
        }
        let out = m.receive(.writeFailed(attError: code), now: 5)
        #expect(out.compactMap(\.failure).first?.contains("busy") == true)
        #expect(m.phase == .failed)
    }

    @Test(arguments: [UInt8(0x81), 0xFD])
    func cccdImproperlyConfiguredOldAndNewCodesSubscribeAgainOnce(code: UInt8) {
        var m = GlucoseDownload()
        _ = m.start(lastStored: nil, now: 0)
        let out = m.receive(.writeFailed(attError: code), now: 1)
        #expect(out.filter { $0 == .subscribeRACP || $0.written != nil } == [.subscribeRACP, .writeRACP([0x01, 0x01])])
        let second = m.receive(.writeFailed(attError: code), now: 2)
        #expect(second.compactMap(\.failure).first?.contains("indications not enabled") == true)
    }

    @Test func insufficientEncryptionFailsAskingForPairing() {
        var m = GlucoseDownload()
        _ = m.start(lastStored: nil, now: 0)
        #expect(m.receive(.writeFailed(attError: 0x0F), now: 1).compactMap(\.failure).first?.contains("pair it") == true)
    }

    @Test func aMeterRefusingTheFilterIsAskedForAllRecordsOnceAndOldOnesAreDropped() {
        var m = GlucoseDownload()
        _ = m.start(lastStored: 3, now: 0)
        let out = m.receive(.racp([0x06, 0x00, 0x01, 0x04]), now: 1)  // operator not supported
        #expect(out.compactMap(\.written) == [[0x01, 0x01]])
        #expect(out.compactMap(\.failure).isEmpty)
        var delivered: [UInt16] = []
        for seq: UInt16 in 1...5 {
            delivered += m.receive(.measurement(glucoseMeasurement(seq)), now: 2).compactMap(\.record).map(\.sequenceNumber)
        }
        #expect(delivered == [4, 5])
        #expect(m.receive(.racp([0x06, 0x00, 0x01, 0x01]), now: 3).compactMap(\.finished) == [2])
        // Refused again with everything asked for: a failure.
        var n = GlucoseDownload()
        _ = n.start(lastStored: nil, now: 0)
        #expect(n.receive(.racp([0x06, 0x00, 0x01, 0x05]), now: 1).compactMap(\.failure).first?.contains("invalid operand 0x05") == true)
    }

    @Test func procedureNotCompletedFails() {
        var m = GlucoseDownload()
        _ = m.start(lastStored: nil, now: 0)
        _ = m.receive(.measurement(glucoseMeasurement(1)), now: 1)
        let out = m.receive(.racp([0x06, 0x00, 0x01, 0x08]), now: 2)
        #expect(out.compactMap(\.failure).first?.contains("procedure not completed") == true)
        #expect(m.phase == .failed)
        #expect(m.delivered == 1)  // what arrived before stays delivered
    }

    @Test func serverBusyAsksAgainAfterTheDelay() {
        var m = GlucoseDownload()
        _ = m.start(lastStored: 1, now: 0)
        #expect(m.receive(.racp([0x06, 0x00, 0x01, 0x0A]), now: 10).compactMap(\.written).isEmpty)
        #expect(m.nextDeadline == 10 + m.options.busyRetryDelayMs)
        #expect(m.receive(.tick, now: 10 + m.options.busyRetryDelayMs).compactMap(\.written) == [[0x01, 0x03, 0x01, 0x02, 0x00]])
    }

    @Test func silenceOnTheRACPFailsAtTheDeadlineWhichEachRecordMovesOn() {
        var m = GlucoseDownload()
        let t = m.options.responseTimeoutMs
        _ = m.start(lastStored: nil, now: 0)
        #expect(m.nextDeadline == t)
        _ = m.receive(.measurement(glucoseMeasurement(1)), now: t - 1)
        #expect(m.receive(.tick, now: t).compactMap(\.failure).isEmpty)
        let out = m.receive(.tick, now: 2 * t - 1)
        #expect(out.compactMap(\.failure).first?.contains("no RACP response") == true)
        #expect(m.nextDeadline == nil)
    }

    @Test func malformedPDUsAreCountedAndNamedAndCostNothingElse() {
        var m = GlucoseDownload()
        _ = m.start(lastStored: nil, now: 0)
        let bad = m.receive(.measurement([0x02, 0x01]), now: 1)
        #expect(bad.compactMap(\.logLine).first?.contains("sequence number") == true)
        let badContext = m.receive(.context([0x06, 0x01, 0x00]), now: 1)
        #expect(badContext.compactMap(\.logLine).first?.contains("meal") == true)
        let badRACP = m.receive(.racp([0x06]), now: 2)
        #expect(badRACP.compactMap(\.logLine).first?.contains("racp operator") == true)
        #expect(m.malformed == 3)
        #expect(m.phase == .downloading)
        #expect(m.receive(.measurement(glucoseMeasurement(1)), now: 3).compactMap(\.record).count == 1)
    }

    @Test func theCursorRoundTripsAndAnythingElseMeansDownloadEverything() {
        #expect(GlucoseCursor.encode(42) == "glucose/1 42")
        #expect(GlucoseCursor.decode(GlucoseCursor.encode(42)) == 42)
        #expect(GlucoseCursor.decode(GlucoseCursor.encode(0xFFFF)) == 0xFFFF)
        #expect(GlucoseCursor.decode("glucose/1 70000") == nil)
        #expect(GlucoseCursor.decode("onetouch/1\nSN\n2026 1 1 0 0 0") == nil)
        #expect(GlucoseCursor.decode(nil) == nil)
    }
}
