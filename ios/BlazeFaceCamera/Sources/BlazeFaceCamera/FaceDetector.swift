// A BlazeFace Core ML model made by `blazeconv coreml` run through Vision on camera frames.
//
// Both kinds of model work:
// * the landmarks model (`blazeconv coreml short_range --landmarks`): boxes, 6 keypoints and scores, MediaPipe's
//   weighted NMS inside; Vision returns its outputs as VNCoreMLFeatureValueObservations;
// * the Vision pipeline (`blazeconv coreml short_range`): boxes and scores (Core ML's hard NMS, no keypoints);
//   Vision returns VNRecognizedObjectObservations.
// The outputs' names and columns are those the models' descriptions state (tests/test_ios_models.py reads them).

import CoreGraphics
import CoreML
import CoreVideo
import ImageIO
import Vision

/// One face, normalised 0...1 to the upright frame (the camera buffer turned by the orientation given to
/// `FaceDetector.detect`), origin at the top left, y downwards.
public struct Face {
    public var box: CGRect
    /// Right eye, left eye, nose tip, mouth centre, right ear tragion, left ear tragion: the SUBJECT's right and
    /// left, also for the mirrored front camera. Empty for the Vision pipeline model.
    public var keypoints: [CGPoint]
    /// The face score, 0...1.
    public var score: Float
}

public final class FaceDetector {
    public enum Kind {
        case landmarks  // outputs `detections` (rows of 17) and `count`
        case vision     // a pipeline ending in NonMaximumSuppression: outputs `confidence` and `coordinates`
    }

    // Columns of a `detections` row (the model's `detection_columns` metadata).
    static let boxColumns = 0..<4           // xmin, ymin, xmax, ymax
    static let firstKeypointColumn = 4      // then (x, y) of each of the 6 keypoints
    static let keypointCount = 6
    static let scoreColumn = 16

    public let kind: Kind
    private let request: VNCoreMLRequest
    private let inputSide: Int
    private let letterboxer = Letterboxer()

    /// Load the model once (slow: compiles for the device); detect on every frame.
    ///
    /// `computeUnits`: `.all` lets Core ML use the Neural Engine, which runs the float16 ML program; prefer
    /// `.cpuAndNeuralEngine` (iOS 16+) to keep the GPU free for the preview and effects, `.cpuOnly` to compare.
    /// Nothing here was timed on a device.
    public init(modelURL: URL, kind: Kind, computeUnits: MLComputeUnits = .all) throws {
        let configuration = MLModelConfiguration()
        configuration.computeUnits = computeUnits
        // `modelURL` is the compiled model Xcode puts in the bundle, e.g.
        // Bundle.main.url(forResource: "ShortRangeLandmarks", withExtension: "mlmodelc")
        let model = try MLModel(contentsOf: modelURL, configuration: configuration)
        let visionModel = try VNCoreMLModel(for: model)
        visionModel.inputImageFeatureName = "image"
        let request = VNCoreMLRequest(model: visionModel)
        // The frame is letterboxed to a square first (Letterboxer), so scaling the square to the model's square
        // neither squashes nor crops: this is the option the model's image description asks for.
        request.imageCropAndScaleOption = .scaleFill
        self.request = request
        self.kind = kind
        let constraint = model.modelDescription.inputDescriptionsByName["image"]?.imageConstraint
        inputSide = constraint?.pixelsWide ?? 128
    }

    /// Faces in one camera frame. Call on the video queue: it blocks until the model has run.
    ///
    /// `orientation`: `Geometry.exifOrientation(deviceOrientation:cameraPosition:)`, so faces are upright for
    /// the model (BlazeFace finds upright faces only). Returns faces in that upright frame, keypoints relabelled
    /// to the subject's sides when the orientation mirrors.
    public func detect(in pixelBuffer: CVPixelBuffer, orientation: CGImagePropertyOrientation) throws -> [Face] {
        guard let square = letterboxer.letterbox(pixelBuffer, orientation: orientation, side: inputSide) else {
            return []
        }
        // The square is already upright: `.up`.
        try VNImageRequestHandler(cvPixelBuffer: square.buffer, orientation: .up, options: [:]).perform([request])
        let faces = kind == .landmarks ? landmarkFaces() : visionFaces()
        return faces.map { face in
            var face = face
            face.box = Geometry.removeLetterbox(face.box, padding: square.padding)
            face.keypoints = face.keypoints.map { Geometry.removeLetterbox($0, padding: square.padding) }
            if Geometry.isMirrored(orientation) && face.keypoints.count == Self.keypointCount {
                face.keypoints = Geometry.swapLeftRight(face.keypoints)
            }
            return face
        }
    }

    /// The landmarks model's rows, in the square's coordinates (top-left origin already).
    private func landmarkFaces() -> [Face] {
        let outputs = request.results as? [VNCoreMLFeatureValueObservation] ?? []
        guard let rows = outputs.first(where: { $0.featureName == "detections" })?.featureValue.multiArrayValue,
              let count = outputs.first(where: { $0.featureName == "count" })?.featureValue.multiArrayValue
        else { return [] }
        return (0..<count[0].intValue).map { row in
            func value(_ column: Int) -> CGFloat { CGFloat(rows[[row, column] as [NSNumber]].floatValue) }
            let box = CGRect(x: value(0), y: value(1), width: value(2) - value(0), height: value(3) - value(1))
            let keypoints = (0..<Self.keypointCount).map { k in
                CGPoint(x: value(Self.firstKeypointColumn + 2 * k), y: value(Self.firstKeypointColumn + 2 * k + 1))
            }
            return Face(box: box, keypoints: keypoints, score: Float(value(Self.scoreColumn)))
        }
    }

    /// The Vision pipeline's observations: `boundingBox` has Vision's bottom-left origin, so flip it.
    private func visionFaces() -> [Face] {
        let observations = request.results as? [VNRecognizedObjectObservation] ?? []
        // observation.confidence is the face score; labels[0] ("face") always says 1.0 (a single class).
        return observations.map {
            Face(box: Geometry.visionRectToTopLeft($0.boundingBox), keypoints: [], score: $0.confidence)
        }
    }
}
