/*
 * An active-learning round (--al_round), shared by every family: the model a family run
 * packaged scores the pool of unlabelled files (or a server's prediction log), and the
 * samples most worth labelling are written as a Supervisely project with the model's
 * answers as pre-annotations (ACTIVE_SELECT: 'insectml select'; budget, strategy and round
 * come from ext.args in conf/modules.config). The labelled export comes back as
 * --<family>_extra_labels.
 */
include { ACTIVE_SELECT } from '../../../modules/active/select/main'

workflow ACTIVE_ROUND {
    take:
    ch_model    // [ meta, model folder, gallery folder (few-shot) or [] ], one per family
    pool        // the folder of unlabelled files or the prediction-log folder

    main:
    ACTIVE_SELECT ( ch_model, pool )

    emit:
    project  = ACTIVE_SELECT.out.project   // [ meta, the labelling project folder ]
    versions = ACTIVE_SELECT.out.versions
}
