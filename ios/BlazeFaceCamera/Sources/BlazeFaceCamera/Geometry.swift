// The coordinate and mirroring math of the guide (docs/ios.md), free of AVFoundation and Vision state.
//
// Every function here has a Python twin in tests/ios_math.py, step for step (snake_case names), which
// tests/test_ios_math.py checks on hand-worked cases and against blazeconv's own letterbox removal.
// Change both together.
//
// Conventions:
// * normalised coordinates are 0...1 of an image's width and height;
// * "top-left" rects have y downwards (UIKit, SwiftUI, the models' outputs); Vision's boundingBox has its
//   origin at the bottom left, y upwards;
// * the "upright" frame is the camera buffer turned by its CGImagePropertyOrientation (what the preview shows);
// * keypoints are in MediaPipe's order: right eye, left eye, nose tip, mouth centre, right ear tragion,
//   left ear tragion (the subject's right and left).

import AVFoundation
import CoreGraphics
import ImageIO
import UIKit

/// Fraction of the square model input padded on EACH side (MediaPipe's LETTERBOX_PADDING, left = right, top = bottom).
public struct LetterboxPadding: Equatable {
    public var x: CGFloat
    public var y: CGFloat
}

public enum Geometry {
    /// Keypoint indices that trade places in a mirrored picture: right eye <-> left eye, right ear <-> left ear.
    static let leftRightPairs = [(0, 1), (4, 5)]

    /// The orientation to give Vision (or CIImage.oriented) for a buffer from `AVCaptureVideoDataOutput`.
    ///
    /// The back camera's buffer is upright when the device is held in `.landscapeLeft` (home button or USB port
    /// on the right); in portrait it needs a quarter turn clockwise (`.right`). The front camera's picture is
    /// also mirrored, as its preview layer shows it by default, hence the `...Mirrored` cases (then swap the
    /// keypoints with `swapLeftRight`). Unknown, face up and face down are treated as portrait.
    public static func exifOrientation(deviceOrientation: UIDeviceOrientation,
                                       cameraPosition: AVCaptureDevice.Position) -> CGImagePropertyOrientation {
        if cameraPosition == .front {
            switch deviceOrientation {
            case .portraitUpsideDown: return .rightMirrored
            case .landscapeLeft: return .downMirrored
            case .landscapeRight: return .upMirrored
            default: return .leftMirrored
            }
        }
        switch deviceOrientation {
        case .portraitUpsideDown: return .left
        case .landscapeLeft: return .up
        case .landscapeRight: return .down
        default: return .right
        }
    }

    /// The buffer's size once turned upright: a quarter turn swaps width and height.
    public static func uprightSize(width: CGFloat, height: CGFloat,
                                   orientation: CGImagePropertyOrientation) -> CGSize {
        switch orientation {
        case .left, .right, .leftMirrored, .rightMirrored:
            return CGSize(width: height, height: width)
        default:
            return CGSize(width: width, height: height)
        }
    }

    /// MediaPipe's letterbox of an upright `width x height` picture: centred in a square of side max(width, height).
    public static func letterboxPadding(width: CGFloat, height: CGFloat) -> LetterboxPadding {
        let side = max(width, height)
        return LetterboxPadding(x: (1 - width / side) / 2, y: (1 - height / side) / 2)
    }

    /// A top-left rect normalised to the square model input -> normalised to the (upright) picture.
    public static func removeLetterbox(_ rect: CGRect, padding: LetterboxPadding) -> CGRect {
        let scaleX = 1 - 2 * padding.x
        let scaleY = 1 - 2 * padding.y
        return CGRect(x: (rect.origin.x - padding.x) / scaleX,
                      y: (rect.origin.y - padding.y) / scaleY,
                      width: rect.width / scaleX,
                      height: rect.height / scaleY)
    }

    /// A point normalised to the square model input -> normalised to the (upright) picture.
    public static func removeLetterbox(_ point: CGPoint, padding: LetterboxPadding) -> CGPoint {
        CGPoint(x: (point.x - padding.x) / (1 - 2 * padding.x),
                y: (point.y - padding.y) / (1 - 2 * padding.y))
    }

    /// Vision's normalised rect (origin bottom left, y up) -> top-left origin, y down (UIKit's way round).
    public static func visionRectToTopLeft(_ rect: CGRect) -> CGRect {
        CGRect(x: rect.origin.x, y: 1 - rect.origin.y - rect.height, width: rect.width, height: rect.height)
    }

    /// Scale and offset of an image shown with `.resizeAspectFill`: scaled to cover the view, centred, cropped.
    static func aspectFill(imageSize: CGSize, viewSize: CGSize) -> (scale: CGFloat, offset: CGPoint) {
        let scale = max(viewSize.width / imageSize.width, viewSize.height / imageSize.height)
        let offset = CGPoint(x: (viewSize.width - imageSize.width * scale) / 2,
                             y: (viewSize.height - imageSize.height * scale) / 2)
        return (scale, offset)
    }

    /// A top-left rect normalised to the upright image -> points in a view (UIKit or SwiftUI) that shows the
    /// image aspect-filled. `imageSize` is the upright image's size (any unit: only its aspect ratio matters).
    public static func aspectFillRect(_ rect: CGRect, imageSize: CGSize, viewSize: CGSize) -> CGRect {
        let (scale, offset) = aspectFill(imageSize: imageSize, viewSize: viewSize)
        return CGRect(x: offset.x + rect.origin.x * imageSize.width * scale,
                      y: offset.y + rect.origin.y * imageSize.height * scale,
                      width: rect.width * imageSize.width * scale,
                      height: rect.height * imageSize.height * scale)
    }

    /// A normalised top-left point of the upright image -> points in an aspect-filled view.
    public static func aspectFillPoint(_ point: CGPoint, imageSize: CGSize, viewSize: CGSize) -> CGPoint {
        let (scale, offset) = aspectFill(imageSize: imageSize, viewSize: viewSize)
        return CGPoint(x: offset.x + point.x * imageSize.width * scale,
                       y: offset.y + point.y * imageSize.height * scale)
    }

    /// Relabel the keypoints of a face found in a mirrored picture (the front camera with `...Mirrored`).
    ///
    /// In a mirrored picture the subject's right eye is on the picture's right, where the model expects a left
    /// eye, so the model's "right eye" is the subject's left. Swapping the pairs gives the subject's own sides.
    public static func swapLeftRight(_ keypoints: [CGPoint]) -> [CGPoint] {
        var swapped = keypoints
        for (right, left) in leftRightPairs {
            swapped[right] = keypoints[left]
            swapped[left] = keypoints[right]
        }
        return swapped
    }

    /// Whether an orientation flips the picture (then the keypoints need `swapLeftRight`).
    public static func isMirrored(_ orientation: CGImagePropertyOrientation) -> Bool {
        switch orientation {
        case .upMirrored, .downMirrored, .leftMirrored, .rightMirrored: return true
        default: return false
        }
    }

    /// A normalised top-left point of the sensor buffer -> of the picture turned upright by `orientation`.
    ///
    /// The EXIF meaning of each case: `.right` (6) has the buffer's first row on the right and its first column
    /// at the top (a quarter turn clockwise), `.leftMirrored` (5) is the transpose, and so on.
    public static func uprightPoint(_ point: CGPoint, orientation: CGImagePropertyOrientation) -> CGPoint {
        let (x, y) = (point.x, point.y)
        switch orientation {
        case .up: return CGPoint(x: x, y: y)
        case .upMirrored: return CGPoint(x: 1 - x, y: y)
        case .down: return CGPoint(x: 1 - x, y: 1 - y)
        case .downMirrored: return CGPoint(x: x, y: 1 - y)
        case .leftMirrored: return CGPoint(x: y, y: x)
        case .right: return CGPoint(x: 1 - y, y: x)
        case .rightMirrored: return CGPoint(x: 1 - y, y: 1 - x)
        case .left: return CGPoint(x: y, y: 1 - x)
        @unknown default: return point
        }
    }

    /// The inverse of `uprightPoint`: a normalised point of the upright picture -> of the sensor buffer.
    public static func sensorPoint(_ point: CGPoint, orientation: CGImagePropertyOrientation) -> CGPoint {
        let (u, v) = (point.x, point.y)
        switch orientation {
        case .up: return CGPoint(x: u, y: v)
        case .upMirrored: return CGPoint(x: 1 - u, y: v)
        case .down: return CGPoint(x: 1 - u, y: 1 - v)
        case .downMirrored: return CGPoint(x: u, y: 1 - v)
        case .leftMirrored: return CGPoint(x: v, y: u)
        case .right: return CGPoint(x: v, y: 1 - u)
        case .rightMirrored: return CGPoint(x: 1 - v, y: 1 - u)
        case .left: return CGPoint(x: 1 - v, y: u)
        @unknown default: return point
        }
    }

    /// A point of the picture upright by `source` -> of the picture upright by `target`: for drawing when the
    /// detector's orientation (the device's, so faces are upright for the model) is not the preview's
    /// (a portrait-only interface, say).
    public static func reorientPoint(_ point: CGPoint, from source: CGImagePropertyOrientation,
                                     to target: CGImagePropertyOrientation) -> CGPoint {
        uprightPoint(sensorPoint(point, orientation: source), orientation: target)
    }

    /// A top-left rect, corner by corner (quarter turns keep rects axis-aligned).
    public static func reorientRect(_ rect: CGRect, from source: CGImagePropertyOrientation,
                                    to target: CGImagePropertyOrientation) -> CGRect {
        let a = reorientPoint(CGPoint(x: rect.minX, y: rect.minY), from: source, to: target)
        let b = reorientPoint(CGPoint(x: rect.maxX, y: rect.maxY), from: source, to: target)
        return CGRect(x: min(a.x, b.x), y: min(a.y, b.y), width: abs(b.x - a.x), height: abs(b.y - a.y))
    }
}
