/*
 * TRAIN: the classifier first, then the segmentation network started from its trunk (PIXER).
 */
include { PIXER_TRAIN_CLASSIFIER } from './modules/pixer_train_classifier'
include { PIXER_TRAIN } from './modules/pixer_train'

workflow TRAIN {
    take:
    training   // [meta, micrographs, particles, map or [], interference masks or []]
    labels     // [meta, labels folder]

    main:
    PIXER_TRAIN_CLASSIFIER(training.map { meta, mics, particles, map, junk -> [meta, mics, particles, junk] })
    PIXER_TRAIN(training.map { meta, mics, particles, map, junk -> [meta, mics] }
        .join(labels, failOnMismatch: true)
        .join(PIXER_TRAIN_CLASSIFIER.out.classifier, failOnMismatch: true))

    emit:
    classifier = PIXER_TRAIN_CLASSIFIER.out.classifier   // [meta, classifier folder]
    model = PIXER_TRAIN.out.model                        // [meta, model folder]
}
