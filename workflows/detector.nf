/*
 * Detector family, two stages: Supervisely box labels → generic insect detector →
 * pseudo-labels on images that carry only a species label → target-species detector
 * trained on box labels + pseudo-labels. Both detectors are evaluated on the same
 * box-labelled test split. Without species-only images, or when none of them gains a
 * box, the target stage is skipped (the pseudo-label step says why) and the generic
 * detector is the family's model.
 */
include { DETECTOR_VALIDATE                        } from '../modules/detector/validate/main'
include { DETECTOR_TRAIN as DETECTOR_TRAIN_GENERIC } from '../modules/detector/train/main'
include { DETECTOR_TRAIN as DETECTOR_TRAIN_TARGET  } from '../modules/detector/train/main'
include { DETECTOR_EVALUATE as DETECTOR_EVALUATE_GENERIC } from '../modules/detector/evaluate/main'
include { DETECTOR_EVALUATE as DETECTOR_EVALUATE_TARGET  } from '../modules/detector/evaluate/main'
include { DETECTOR_PSEUDOLABEL                     } from '../modules/detector/pseudolabel/main'
include { DETECTOR_EXPORT                          } from '../modules/detector/export/main'
include { DETECTOR_PACKAGE                         } from '../modules/detector/package/main'

workflow DETECTOR {
    take:
    ch_input    // [ meta, data folder holding the Supervisely project and the species folders ]

    main:
    ch_versions = Channel.empty()
    data = ch_input.map { meta, data -> data }.first()

    DETECTOR_VALIDATE ( ch_input )
    ch_versions = ch_versions.mix(DETECTOR_VALIDATE.out.versions)

    ch_generic = DETECTOR_VALIDATE.out.manifest
        .map { meta, manifest, dataset -> [ meta + [ stage: 'generic' ], manifest, dataset ] }
    DETECTOR_TRAIN_GENERIC ( ch_generic, data )
    DETECTOR_EVALUATE_GENERIC ( DETECTOR_TRAIN_GENERIC.out.model.join(ch_generic), data )
    DETECTOR_PSEUDOLABEL ( DETECTOR_TRAIN_GENERIC.out.model.join(ch_generic), data )

    DETECTOR_PSEUDOLABEL.out.skipped.subscribe { meta, note -> log.warn(note.text.trim()) }
    ch_target = DETECTOR_PSEUDOLABEL.out.merged
        .map { meta, manifest, dataset -> [ meta + [ stage: 'target' ], manifest, dataset ] }
    DETECTOR_TRAIN_TARGET ( ch_target, data )
    DETECTOR_EVALUATE_TARGET ( DETECTOR_TRAIN_TARGET.out.model.join(ch_target), data )

    // Both detectors are exported and packaged: the generic one finds insects, the target
    // one names the species. The archive holds the model folder and its TorchScript export.
    ch_models = DETECTOR_TRAIN_GENERIC.out.model.mix(DETECTOR_TRAIN_TARGET.out.model)
    DETECTOR_EXPORT ( ch_models )
    DETECTOR_PACKAGE ( ch_models.join(DETECTOR_EXPORT.out.torchscript) )

    ch_versions = ch_versions.mix(
        DETECTOR_EXPORT.out.versions.first(), DETECTOR_PACKAGE.out.versions.first(),
        DETECTOR_TRAIN_GENERIC.out.versions, DETECTOR_EVALUATE_GENERIC.out.versions,
        DETECTOR_PSEUDOLABEL.out.versions, DETECTOR_TRAIN_TARGET.out.versions, DETECTOR_EVALUATE_TARGET.out.versions)

    emit:
    generic  = DETECTOR_TRAIN_GENERIC.out.model
    target   = DETECTOR_TRAIN_TARGET.out.model
    metrics  = DETECTOR_EVALUATE_GENERIC.out.metrics.mix(DETECTOR_EVALUATE_TARGET.out.metrics)
    pseudo   = DETECTOR_PSEUDOLABEL.out.pseudo
    archives = DETECTOR_PACKAGE.out.archive
    versions = ch_versions
}
