import IoMTCore
import IoMTSerial

// libFuzzer entry point for every IoMTSerial decoder (issue 4):
//   swift build -c release --sanitize=fuzzer --product iomt-serial-fuzz
//   .build/release/iomt-serial-fuzz -max_total_time=60 -max_len=4096
// The first byte picks the decoder; the rest is fed in chunks whose sizes come from the
// second byte. A crash, a hang (libFuzzer -timeout) or an implausible number is a finding:
// the plausibility check traps on purpose, so the fuzzer reports it.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 2 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let selector = bytes[0] % 8
    let chunk = Int(bytes[1] % 32) + 1
    let input = Array(bytes[2...])
    let events: [DecoderEvent]
    switch selector {
    case 0: events = run(ContecLegacyDecoder(), input, chunk)
    case 1: events = run(ContecV7Decoder(), input, chunk)
    case 2: events = run(NoninFrameDecoder(format: .df2), input, chunk)
    case 3: events = run(NoninFrameDecoder(format: .df7), input, chunk)
    case 4: events = run(NoninDF8Decoder(), input, chunk)
    case 5: events = run(MasimoASCII1Decoder(), input, chunk)
    case 6: events = run(LineProfileDecoder(unchecked: .masimoASCII1Example), input, chunk)
    default:
        var session = OneTouchSession(watermark: { _ in nil })
        _ = session.opened(atMilliseconds: 0)
        var out: [DecoderEvent] = []
        var i = 0
        while i < input.count {
            out += session.received(input[i..<min(input.count, i + chunk)], atMilliseconds: Int64(i)).events
            _ = session.tick(atMilliseconds: Int64(i))
            i += chunk
        }
        events = out
    }
    for case .reading(let r) in events {
        for o in r.observations {
            guard case .numeric(let v) = o.value else { continue }
            let range: ClosedRange<Double>
            switch o.code {
            case .pulseOximetrySpO2: range = Plausible.spo2
            case .pulseOximetryPulseRate: range = Plausible.pulseRate
            case .pulseOximetryPerfusionIndex: range = Plausible.perfusionIndex
            case .glucoseCapillaryWholeBlood: range = Plausible.glucoseMgPerDL
            default: continue
            }
            if !range.contains(v) { implausible(o.code, v) }
        }
    }
    return 0
}

func run<D: StreamDecoder>(_ decoder: D, _ input: [UInt8], _ chunk: Int) -> [DecoderEvent] {
    var d = decoder
    var out: [DecoderEvent] = []
    var i = 0
    while i < input.count {
        out += d.feed(input[i..<min(input.count, i + chunk)])
        i += chunk
    }
    return out
}

/// Reports a finding to libFuzzer (the fuzz harness is the one place a trap is wanted).
func implausible(_ code: MDCCode, _ value: Double) -> Never {
    print("implausible \(code) = \(value)")
    abort()
}

#if canImport(Glibc)
import Glibc
#endif
