// MediaPipe's letterbox on the GPU with Core Image: the camera buffer turned upright (and mirrored for the front
// camera), scaled so its longer side fills the model's square input, centred, the rest black.
//
// Why not let Vision do it: the models are square and MediaPipe keeps the aspect ratio. Vision's
// `imageCropAndScaleOption = .scaleFill` squashes a non-square frame, and what `.scaleFit` does to the coordinates
// it reports could not be checked here (no Apple device). Letterboxing ourselves makes the square exactly the
// picture blazeconv's `letterbox` makes (same padding; the resampling filter differs), so `.scaleFill` on it
// neither squashes nor crops, and `Geometry.removeLetterbox` undoes the padding exactly.

import CoreImage
import CoreVideo
import ImageIO

final class Letterboxer {
    /// The square model input and how to undo it.
    struct Square {
        let buffer: CVPixelBuffer
        let padding: LetterboxPadding  // fraction of the square padded on each side
        let uprightSize: CGSize        // the frame's size once turned upright, in pixels
    }

    // No colour management: the model was trained on the camera's values as they are (MediaPipe converts none).
    private let context = CIContext(options: [.workingColorSpace: NSNull(), .outputColorSpace: NSNull()])
    private var output: CVPixelBuffer?  // one reusable square; detection is synchronous on one queue

    /// `pixelBuffer` (any size, as the camera delivers it) -> a `side x side` BGRA square, letterboxed.
    func letterbox(_ pixelBuffer: CVPixelBuffer, orientation: CGImagePropertyOrientation, side: Int) -> Square? {
        guard let buffer = squareBuffer(side: side) else { return nil }
        // Turn (and for the front camera mirror) the frame as the preview shows it.
        let upright = CIImage(cvPixelBuffer: pixelBuffer).oriented(orientation)
        let size = upright.extent.size
        let scale = CGFloat(side) / max(size.width, size.height)
        // Core Image's origin is at the bottom left; the centring is symmetric, so that changes nothing here.
        let fitted = upright
            .transformed(by: CGAffineTransform(translationX: -upright.extent.minX, y: -upright.extent.minY))
            .transformed(by: CGAffineTransform(scaleX: scale, y: scale))
            .transformed(by: CGAffineTransform(translationX: (CGFloat(side) - size.width * scale) / 2,
                                               y: (CGFloat(side) - size.height * scale) / 2))
        let black = CIImage(color: .black).cropped(to: CGRect(x: 0, y: 0, width: side, height: side))
        context.render(fitted.composited(over: black), to: buffer)
        let padding = Geometry.letterboxPadding(width: size.width, height: size.height)
        return Square(buffer: buffer, padding: padding, uprightSize: size)
    }

    private func squareBuffer(side: Int) -> CVPixelBuffer? {
        if let output, CVPixelBufferGetWidth(output) == side { return output }
        var created: CVPixelBuffer?
        let attributes = [kCVPixelBufferIOSurfacePropertiesKey as String: [String: Any]()] as CFDictionary
        CVPixelBufferCreate(kCFAllocatorDefault, side, side, kCVPixelFormatType_32BGRA, attributes, &created)
        output = created
        return created
    }
}
