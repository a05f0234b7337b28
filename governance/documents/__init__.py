"""Documents attached as evidence: what a file is (from its bytes), where its bytes are kept, and which document
types a case must carry. Writing them is :mod:`governance.operations.documents`."""
