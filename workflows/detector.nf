/*
 * Detector family, two stages: Supervisely box labels → generic insect detector →
 * pseudo-labels on images that carry only a species label → target-species detector
 * trained on box labels + pseudo-labels. Both detectors are evaluated on the same
 * box-labelled test split; the target's report sets the generic's headline beside its
 * own. Without species-only images, or when none of them gains a box, the target stage
 * is skipped (the pseudo-label step says why) and the generic detector is the family's
 * model.
 * Validation opens every image, so it runs as chunks of `chunk_size` images, one task
 * each: the labels listed (DETECTOR_VALIDATE_LIST), each chunk checked
 * (DETECTOR_VALIDATE_CHECK), DETECTOR_VALIDATE gathers, reports and splits; the files are
 * the same for any chunk size.
 */
include { DETECTOR_VALIDATE_LIST                   } from '../modules/detector/validate_list/main'
include { DETECTOR_VALIDATE_CHECK                  } from '../modules/detector/validate_check/main'
include { DETECTOR_VALIDATE                        } from '../modules/detector/validate/main'
include { DETECTOR_TRAIN as DETECTOR_TRAIN_GENERIC } from '../modules/detector/train/main'
include { DETECTOR_TRAIN as DETECTOR_TRAIN_TARGET  } from '../modules/detector/train/main'
include { DETECTOR_EVALUATE as DETECTOR_EVALUATE_GENERIC } from '../modules/detector/evaluate/main'
include { DETECTOR_EVALUATE as DETECTOR_EVALUATE_TARGET  } from '../modules/detector/evaluate/main'
include { DETECTOR_PSEUDOLABEL                     } from '../modules/detector/pseudolabel/main'
include { DETECTOR_EXPORT                          } from '../modules/detector/export/main'
include { DETECTOR_PACKAGE                         } from '../modules/detector/package/main'
include { chunks; inChunkOrder                     } from '../subworkflows/local/chunks/main'

workflow DETECTOR {
    take:
    ch_input    // [ meta, data folder holding the Supervisely project and the species folders, weights (or []), labelled active-learning export (or []) ]
    chunk_size  // images per task of the validation checks

    main:
    ch_versions = Channel.empty()
    data = ch_input.map { meta, data, weights, extra -> data }.first()
    weights = ch_input.map { meta, data, weights, extra -> weights }.first()   // both stages start from them
    // A labelled active-learning export: the gather merges its images into the train split.
    ch_extra = ch_input.map { meta, data, weights, extra -> [ meta.id, extra ] }

    // Validation scattered: the labels listed, each chunk of `chunk_size` candidates
    // checked in its own task, the chunks gathered (reported, split) in chunk order.
    DETECTOR_VALIDATE_LIST ( ch_input.map { meta, data, weights, extra -> [ meta, data ] } )
    ch_check = chunks(DETECTOR_VALIDATE_LIST.out.candidates, chunk_size, 1)
        .combine(data)
    DETECTOR_VALIDATE_CHECK ( ch_check )
    ch_gather = DETECTOR_VALIDATE_LIST.out.listing
        .map { meta, listing -> [ meta.id, meta, listing ] }
        .join(inChunkOrder(DETECTOR_VALIDATE_CHECK.out.checked))
        .join(ch_extra)
        .map { id, meta, listing, checked, extra -> [ meta, listing, checked, extra ] }
    DETECTOR_VALIDATE ( ch_gather )
    ch_versions = ch_versions.mix(
        DETECTOR_VALIDATE_LIST.out.versions, DETECTOR_VALIDATE_CHECK.out.versions, DETECTOR_VALIDATE.out.versions)

    ch_generic = DETECTOR_VALIDATE.out.manifest
        .map { meta, manifest, dataset -> [ meta + [ stage: 'generic' ], manifest, dataset ] }
    DETECTOR_TRAIN_GENERIC ( ch_generic, data, weights )
    DETECTOR_EVALUATE_GENERIC (
        DETECTOR_TRAIN_GENERIC.out.model.join(ch_generic)
            .map { meta, model, manifest, dataset -> [ meta, model, manifest, dataset, [] ] },
        data )
    DETECTOR_PSEUDOLABEL ( DETECTOR_TRAIN_GENERIC.out.model.join(ch_generic), data )

    DETECTOR_PSEUDOLABEL.out.skipped.subscribe { meta, note -> log.warn(note.text.trim()) }
    ch_target = DETECTOR_PSEUDOLABEL.out.merged
        .map { meta, manifest, dataset -> [ meta + [ stage: 'target' ], manifest, dataset ] }
    DETECTOR_TRAIN_TARGET ( ch_target, data, weights )
    // The target's report sets the generic detector's evaluation (same test images) beside its own.
    ch_generic_evaluation = DETECTOR_EVALUATE_GENERIC.out.evaluation.map { meta, evaluation -> [ meta.id, evaluation ] }
    ch_evaluate_target = DETECTOR_TRAIN_TARGET.out.model.join(ch_target)
        .map { meta, model, manifest, dataset -> [ meta.id, meta, model, manifest, dataset ] }
        .join(ch_generic_evaluation)
        .map { id, meta, model, manifest, dataset, generic -> [ meta, model, manifest, dataset, generic ] }
    DETECTOR_EVALUATE_TARGET ( ch_evaluate_target, data )

    // Both detectors are exported and packaged: the generic one finds insects, the target
    // one names the species. The archive holds the model folder and its TorchScript export.
    ch_models = DETECTOR_TRAIN_GENERIC.out.model.mix(DETECTOR_TRAIN_TARGET.out.model)
    DETECTOR_EXPORT ( ch_models )
    DETECTOR_PACKAGE ( ch_models.join(DETECTOR_EXPORT.out.torchscript) )

    ch_versions = ch_versions.mix(
        DETECTOR_EXPORT.out.versions.first(), DETECTOR_PACKAGE.out.versions.first(),
        DETECTOR_TRAIN_GENERIC.out.versions, DETECTOR_EVALUATE_GENERIC.out.versions,
        DETECTOR_PSEUDOLABEL.out.versions, DETECTOR_TRAIN_TARGET.out.versions, DETECTOR_EVALUATE_TARGET.out.versions)

    // The family's model: the target-species detector, or the generic one when the target
    // stage was skipped.
    ch_best = DETECTOR_TRAIN_GENERIC.out.model.map { meta, model -> [ meta.id, [ meta, model ] ] }
        .join(DETECTOR_TRAIN_TARGET.out.model.map { meta, model -> [ meta.id, [ meta, model ] ] }, remainder: true)
        .map { id, generic, target -> target ?: generic }

    emit:
    generic  = DETECTOR_TRAIN_GENERIC.out.model
    target   = DETECTOR_TRAIN_TARGET.out.model
    best     = ch_best                // [ meta, model ]: the target detector, else the generic one
    metrics  = DETECTOR_EVALUATE_GENERIC.out.metrics.mix(DETECTOR_EVALUATE_TARGET.out.metrics)
    pseudo   = DETECTOR_PSEUDOLABEL.out.pseudo
    archives = DETECTOR_PACKAGE.out.archive
    versions = ch_versions
}
